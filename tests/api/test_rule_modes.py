"""Rule modes (CDS_RULE_MODES, issue 26): a silent rule runs and is recorded but never shown,
in any hook; precedence and the cap are the live rules'; bad settings stop the start-up."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from cds_service import create_app
from cds_service.cli import main
from cds_service.config import ConfigError
from cds_service.governance.models import IssuedCard
from cds_service.rules.catalogue import CATALOGUE
from cds_service.runtime import runtime
from tests.support.scenarios import SCENARIOS, call, request_of

RULE_IDS = [row.id for row in CATALOGUE]
# Two halves of the catalogue, so that every rule is silent in one run and live in the other,
# and rules that suppress or absorb each other fall on either side.
HALVES = {"even": RULE_IDS[0::2], "odd": RULE_IDS[1::2]}


def make_app(tmp_path: Path, modes: dict[str, Any]) -> Flask:
    return create_app(
        {
            "ENV": "testing",
            "DATABASE_URL": f"sqlite:///{tmp_path}/cds-{len(list(tmp_path.iterdir()))}.sqlite3",
            "RULE_MODES": modes,
        }
    )


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        runtime(app).storage.close()


def shown(cards: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(c["source"]["topic"]["code"], c["indicator"], c["summary"]) for c in cards]


@pytest.mark.parametrize("half", sorted(HALVES))
def test_a_silent_rule_never_appears_in_any_hook_answer(
    tmp_path: Path, apps: list[Flask], half: str
) -> None:
    """Every fixture scenario of every hook: with half the rules silent, no silent rule is in
    the answer, and the answer is exactly the one of the same rules switched off (so a silent
    rule neither suppresses, absorbs nor crowds out a live card)."""
    silent = HALVES[half]
    pilot = make_app(tmp_path, {"*": {rule: "silent" for rule in silent}})
    off = make_app(tmp_path, {"*": {rule: "off" for rule in silent}})
    apps.extend([pilot, off])
    hooks = set()
    for scenario in SCENARIOS:
        body = request_of(scenario)
        status, answer = call(pilot.test_client(), body)
        assert status == 200, scenario["file"]
        assert not {c["source"]["topic"]["code"] for c in answer["cards"]} & set(silent)
        _, without = call(off.test_client(), body)
        assert shown(answer["cards"]) == shown(without["cards"]), scenario["file"]
        hooks.add(body["hook"])
    assert hooks == {"patient-view", "order-select", "order-sign"}


def test_silent_cards_are_recorded_with_mode_version_and_the_all_live_answer(
    tmp_path: Path, apps: list[Flask]
) -> None:
    app = make_app(tmp_path, {"*": {"*": "silent"}})
    apps.append(app)
    scenario = next(s for s in SCENARIOS if "capped-at-three" in s["file"])
    status, answer = call(app.test_client(), request_of(scenario))
    assert (status, answer["cards"]) == (200, [])
    storage = runtime(app).storage
    storage.flush()
    with storage.engine.connect() as connection:
        rows = connection.execute(
            select(
                IssuedCard.rule_id,
                IssuedCard.mode,
                IssuedCard.knowledge_version,
                IssuedCard.all_live_answer,
            )
        ).all()
    version = runtime(app).knowledge.version
    # The crowded fixture's four problems (the dose review absorbs the profound lymphopenia).
    would_be = "METHOTREXATE_DAILY_DOSING DRUG_CYTOPENIA_DOSE_REVIEW THIOPURINE_PGX"
    assert sorted(rows) == sorted(
        (rule, "silent", version, would_be)
        for rule in (
            "METHOTREXATE_DAILY_DOSING",
            "DRUG_CYTOPENIA_DOSE_REVIEW",
            "THIOPURINE_PGX",
            "DATA_QUALITY",  # fired, though it would not have fitted in the 3 cards
        )
    )


@pytest.mark.parametrize(
    ("modes", "message"),
    [
        ({"no-such-service": {"CBC_STALE": "silent"}}, "'no-such-service'.*no such service"),
        ({"*": {"NO_SUCH_RULE": "silent"}}, "'NO_SUCH_RULE' is not a rule this service runs"),
        (
            {"leukopenia-order-sign": {"CBC_STALE": "silent"}},  # a patient-view rule
            "'CBC_STALE' is not a rule this service runs",
        ),
        ({"*": {"CBC_STALE": "quiet"}}, "mode must be live, silent or off"),
        ({"*": "silent"}, "must be an object from rule id to mode"),
        (["silent"], "CDS_RULE_MODES must be a JSON object"),
    ],
)
def test_a_bad_rule_mode_stops_the_start_up(
    tmp_path: Path, modes: Any, message: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_app(tmp_path, modes)
    # The command line: one line naming the setting, exit status 2.
    monkeypatch.setenv("CDS_RULE_MODES", json.dumps(modes))
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{tmp_path}/cli.sqlite3")
    for serve in (["serve", "--port", "1"], ["serve", "--production", "--port", "1"]):
        # Production: checked once in gunicorn's master, before any worker starts.
        assert main(serve) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "CDS_RULE_MODES" in error


def test_the_start_up_log_says_which_rules_are_silent_or_off(
    tmp_path: Path, apps: list[Flask], caplog: pytest.LogCaptureFixture
) -> None:
    modes = {
        "*": {"*": "silent", "FEBRILE_NEUTROPENIA": "live"},
        "leukopenia-patient-view": {"LYMPHOPENIA_INFO": "off"},
    }
    with caplog.at_level(logging.INFO, logger="cds_service"):
        apps.append(make_app(tmp_path, modes))
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rule modes")]
    assert "leukopenia-patient-view: silent NEUTROPENIA_SEVERE" in line
    assert "leukopenia-patient-view: off LYMPHOPENIA_INFO" in line
    assert "FEBRILE_NEUTROPENIA" not in line
    services = runtime(apps[0]).services
    assert services["leukopenia-order-sign"].rule_modes["GCSF_CAUTION"] == "silent"
    assert "FEBRILE_NEUTROPENIA" not in services["leukopenia-order-sign"].rule_modes
