"""The /admin/ governance console: Basic auth, the JSON feed, the CSV exports, and the page
in a real headless Chromium (apt-get install -y chromium chromium-driver), with a screenshot
kept in test-artefacts/ (TEST_ARTEFACTS_DIR)."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from cds_service.governance import init_app
from cds_service.governance.report import NO_REASON

from .conftest import SERVICE_ID, Clock, feedback_item, make_card, make_config, storage_of
from .governance_seed import MONITOR, PROFOUND, STALE, seed_governance
from .test_report import seed_history

USER, PASSWORD = "admin", "correct horse battery"
CHROMEDRIVER = "/usr/bin/chromedriver"
ADMIN_PATHS = (
    "/admin/",
    "/admin/api/stats",
    "/admin/export/rules.csv",
    "/admin/static/chart.umd.min.js",
)
ARTEFACTS = Path(
    os.environ.get("TEST_ARTEFACTS_DIR", Path(__file__).resolve().parents[2] / "test-artefacts")
)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_dashboard_is_off_without_an_admin_password(tmp_path: Any) -> None:
    app = Flask(__name__)
    storage = init_app(app, make_config(f"sqlite:///{tmp_path}/c.sqlite3"), {SERVICE_ID})
    try:
        client = app.test_client()
        for path in ADMIN_PATHS:
            assert client.get(path, headers=basic("admin", "")).status_code == 404
    finally:
        storage.close()


@pytest.mark.parametrize(
    "headers", [{}, basic(USER, "wrong"), basic("root", PASSWORD), {"Authorization": "Bearer abc"}]
)
def test_dashboard_asks_for_the_admin_credential(app: Flask, headers: dict[str, str]) -> None:
    for path in ADMIN_PATHS:
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
    assert "No cards in this period." in page


def override_with_client_code(app: Flask, code: str) -> None:
    """A card overridden with a reason code outside the catalogue: shown as sent (displays
    from clients are never shown)."""
    storage = storage_of(app)
    card = make_card("CBC_STALE")
    storage.record_cards(SERVICE_ID, "patient-view", "h", "Patient/1", [card], "v")
    storage.flush()
    item = feedback_item(card["uuid"], code=code)
    app.test_client().post(f"/cds-services/{SERVICE_ID}/feedback", json={"feedback": [item]})


def test_override_reason_text_from_clients_is_escaped(app: Flask, clock: Clock) -> None:
    override_with_client_code(app, "<script>alert(1)</script>")
    page = app.test_client().get("/admin/?from=2025-03-01", headers=basic(USER, PASSWORD))
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


def get(app: Flask, path: str) -> Any:
    return app.test_client().get(path, headers=basic(USER, PASSWORD))


SEEDED = f"from=2025-03-03&to=2025-03-16&service={SERVICE_ID}"


def test_every_table_exports_as_csv_with_the_seeded_numbers(app: Flask, clock: Clock) -> None:
    seed_governance(app, clock)
    rules = get(app, f"/admin/export/rules.csv?{SEEDED}")
    assert rules.mimetype == "text/csv"
    assert "governance-rules-2025-03-03-2025-03-16.csv" in rules.headers["Content-Disposition"]
    by_rule = {row["rule"]: row for row in csv.DictReader(io.StringIO(rules.get_data(True)))}
    assert by_rule[MONITOR]["live per 100 calls"] == "33.33"
    assert by_rule[MONITOR]["live per 100 in-scope calls"] == "38.46"
    assert by_rule[PROFOUND]["silent patients"] == "2"
    trend = get(app, f"/admin/export/weeks.csv?{SEEDED}&rule={PROFOUND}").get_data(True)
    assert [(r["week"], r["silent cards"]) for r in csv.DictReader(io.StringIO(trend))] == [
        ("2025-W10", "3"),
        ("2025-W11", "1"),
    ]
    reasons = get(app, f"/admin/export/reasons.csv?{SEEDED}").get_data(True)
    assert reasons.splitlines()[:2] == [
        "reason,code,overrides",
        "Already addressed,already-addressed,2",
    ]


@pytest.mark.parametrize(
    "query",
    [
        "from=last-week",
        "from=2025-03-10&to=2025-03-01",
        "from=2000-01-01&to=9999-12-31",
        "to=9999-12-31",
        "service=not-ours",
    ],
)
def test_a_bad_period_or_service_is_a_400(app: Flask, query: str) -> None:
    for path in ("/admin/", "/admin/export/rules.csv"):
        assert get(app, f"{path}?{query}").status_code == 400


def test_unknown_exports_and_rules_are_404(app: Flask, clock: Clock) -> None:
    seed_governance(app, clock)
    assert get(app, f"/admin/export/secrets.csv?{SEEDED}").status_code == 404
    assert get(app, f"/admin/export/weeks.csv?{SEEDED}&rule=NOPE").status_code == 404


def test_a_reason_code_from_a_client_cannot_become_a_formula(app: Flask, clock: Clock) -> None:
    override_with_client_code(app, '=HYPERLINK("http://x","y")')
    exported = get(app, "/admin/export/reasons.csv?from=2025-03-01").get_data(True)
    [row] = list(csv.DictReader(io.StringIO(exported)))
    assert row["reason"].startswith("'") and not row["code"].startswith("=")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the page, not the database
def test_console_in_a_real_browser(
    app: Flask, clock: Clock, live_server: str, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    seed_governance(app, clock)
    browser.set_window_size(1440, 900)  # a laptop screen
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": basic(USER, PASSWORD)})
    browser.get(f"{live_server}/admin/?{SEEDED}")

    assert browser.find_element(By.TAG_NAME, "h1").text == "Governance console"
    assert browser.find_element(By.ID, "calls").text == "15"
    assert browser.find_element(By.ID, "in-scope").text == "13"
    row = browser.find_element(By.CSS_SELECTOR, f'#rules tr[data-rule="{MONITOR}"]')
    cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
    assert cells[:13] == [
        "LEUKOPENIA_MONITOR",
        "5",
        "33.3",
        "38.5",
        "3",
        "0",
        "0.0",
        "0.0",
        "0",
        "2",
        "40",
        "3",
        "2",
    ]
    silent = browser.find_element(By.CSS_SELECTOR, f'#rules tr[data-rule="{PROFOUND}"]')
    assert [c.text for c in silent.find_elements(By.TAG_NAME, "td")][5:9] == [
        "4",
        "26.7",
        "30.8",
        "2",
    ]
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.trend-chart")
    assert [c.get_attribute("data-rule") for c in charts] == [STALE, MONITOR, PROFOUND]
    drawn = json.loads(
        browser.execute_script(
            """return JSON.stringify(Array.from(
                 document.querySelectorAll("figure.trend-chart canvas")).map(c => {
                 const chart = Chart.getChart(c);
                 return {labels: chart.data.labels,
                         live: chart.data.datasets[0].data, silent: chart.data.datasets[1].data,
                         marks: chart.config.options.plugins.versionMarkers.marks,
                         height: c.clientHeight};
               }));"""
        )
    )
    monitor = drawn[1]
    assert monitor["labels"] == ["2025-W10", "2025-W11"]
    assert monitor["live"] == [40, 20] and monitor["silent"] == [0, 0]
    assert monitor["marks"] == [{"label": "k2", "index": 1}]  # the knowledge version changed
    assert drawn[2]["silent"] == [30, 20]
    assert all(chart["height"] > 200 for chart in drawn)  # drawn, at a readable size
    reasons = browser.execute_script(
        "const c = Chart.getChart(document.querySelector('#reasons canvas'));"
        "return [c.data.labels, c.data.datasets[0].data];"
    )
    assert reasons == [
        ["Already addressed", NO_REASON, "Benefit outweighs risk"],
        [2, 1, 1],
    ]
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(1440, height + 140)  # the whole page, at laptop width
    assert browser.save_screenshot(str(ARTEFACTS / "governance-console.png"))
    # Nothing fetched from elsewhere, no script error.
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);"
    )
    assert resources and all(url.startswith(live_server) for url in resources)
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
