"""The /admin/ governance dashboard: Basic auth, the JSON feed, and the page in a real
headless Chromium (apt-get install -y chromium chromium-driver)."""

from __future__ import annotations

import base64
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from cds_service.governance import init_app

from .conftest import SERVICE_ID, Clock, feedback_item, make_card, make_config
from .test_report import seed_history

USER, PASSWORD = "admin", "correct horse battery"
CHROMEDRIVER = "/usr/bin/chromedriver"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_dashboard_is_off_without_an_admin_password(tmp_path: Any) -> None:
    app = Flask(__name__)
    storage = init_app(app, make_config(f"sqlite:///{tmp_path}/c.sqlite3"), {SERVICE_ID})
    try:
        client = app.test_client()
        assert client.get("/admin/", headers=basic("admin", "")).status_code == 404
        assert client.get("/admin/api/stats").status_code == 404
    finally:
        storage.close()


@pytest.mark.parametrize(
    "headers", [{}, basic(USER, "wrong"), basic("root", PASSWORD), {"Authorization": "Bearer abc"}]
)
def test_dashboard_asks_for_the_admin_credential(app: Flask, headers: dict[str, str]) -> None:
    for path in ("/admin/", "/admin/api/stats"):
        response = app.test_client().get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_stats_json_feeds_the_seeded_numbers(app: Flask, clock: Clock) -> None:
    seed_history(app, clock)
    client = app.test_client()
    body = client.get("/admin/api/stats?since=2025-03-01", headers=basic(USER, PASSWORD)).json
    assert body["since"] == "2025-03-01"
    assert [(s["rule_id"], s["week"], s["shown"], s["acceptance_rate"]) for s in body["stats"]] == [
        ("CBC_STALE", "2025-W11", 1, 0.0),
        ("LEUKOPENIA_MONITOR", "2025-W10", 5, 0.4),
        ("LEUKOPENIA_MONITOR", "2025-W11", 2, 0.0),
    ]
    bad = client.get("/admin/api/stats?since=last-week", headers=basic(USER, PASSWORD))
    assert bad.status_code == 400


def test_default_period_is_the_last_26_weeks(app: Flask, clock: Clock) -> None:
    seed_history(app, clock)
    clock.advance(weeks=27)
    client = app.test_client()
    assert client.get("/admin/api/stats", headers=basic(USER, PASSWORD)).json["stats"] == []
    page = client.get("/admin/", headers=basic(USER, PASSWORD)).get_data(as_text=True)
    assert "No cards were shown in this period." in page


def test_override_reason_text_from_clients_is_escaped(app: Flask, clock: Clock) -> None:
    storage = app.extensions["cds_storage"]
    card = make_card("CBC_STALE")
    storage.record_cards(SERVICE_ID, "patient-view", "h", "Patient/1", [card], "v")
    storage.flush()
    # A code outside the catalogue is shown as sent (displays from clients are never shown).
    item = feedback_item(card["uuid"], code="<script>alert(1)</script>")
    app.test_client().post(f"/cds-services/{SERVICE_ID}/feedback", json={"feedback": [item]})
    page = app.test_client().get("/admin/?since=2025-01-01", headers=basic(USER, PASSWORD))
    assert "<script>" not in page.get_data(as_text=True)
    assert "&lt;script&gt;" in page.get_data(as_text=True)


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture
def browser() -> Iterator[Any]:
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        pytest.skip("chromium not installed: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the page, not the database
def test_dashboard_page_in_a_real_browser(
    app: Flask, clock: Clock, live_server: str, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    seed_history(app, clock)
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": basic(USER, PASSWORD)})
    browser.get(f"{live_server}/admin/?since=2025-03-01")

    assert browser.find_element(By.TAG_NAME, "h1").text == "Card feedback since 2025-03-01"
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.rule-chart")
    assert [c.get_attribute("data-rule") for c in charts] == ["CBC_STALE", "LEUKOPENIA_MONITOR"]
    caption = charts[1].find_element(By.TAG_NAME, "figcaption").text
    assert caption == "LEUKOPENIA_MONITOR: 2 accepted, 4 overridden of 7 shown"
    # Two weekly points; the W10 point sits at 40% of the plot height.
    dots = charts[1].find_elements(By.CSS_SELECTOR, "circle.dot")
    assert [d.find_element(By.TAG_NAME, "title").get_attribute("textContent") for d in dots] == [
        "2025-W10: 40% of 5 shown",
        "2025-W11: 0% of 2 shown",
    ]
    assert dots[0].size["height"] > 0  # drawn, not just present
    bars = browser.find_elements(By.CSS_SELECTOR, "#reasons rect.bar")
    assert [b.find_element(By.TAG_NAME, "title").get_attribute("textContent") for b in bars] == [
        "Counts already reviewed: 2",
        "(no coded reason): 1",
        "Already addressed: 1",
    ]
    assert bars[0].size["width"] > bars[1].size["width"] > 0
    rows = browser.find_elements(By.CSS_SELECTOR, "#numbers tr")
    assert rows[2].text.split()[:6] == ["LEUKOPENIA_MONITOR", "2025-W10", "5", "2", "2", "40%"]
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
