"""The `cds-service` command: serve, evaluate a request or a patient Bundle, replay a fixture,
report, list the settings."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cds_service.fhir.bundles import flatten
from cds_service.fhir.timeshift import FIXTURE_ANCHOR, replay_now
from cds_service.protocol import json_body
from cds_service.protocol.hooks import PATIENT_VIEW


class InputRefused(Exception):
    """A file the command cannot use; the message (one line) says why."""


def read_document(path: str, max_bytes: int) -> dict[str, Any]:
    """The JSON object in `path`, read as the HTTP endpoint reads a body: at most `max_bytes`
    (CDS_MAX_CONTENT_LENGTH: `/dev/zero` is refused, not read for ever), strict JSON (no
    NaN, no integer beyond 64 bits, UTF-8 only), at most 64 levels deep."""
    try:
        with open(path, "rb") as file:
            raw = file.read(max_bytes + 1)
    except OSError as error:
        raise InputRefused(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(raw) > max_bytes:
        raise InputRefused(f"{path}: larger than {max_bytes} bytes (CDS_MAX_CONTENT_LENGTH)")
    try:
        document = json_body.loads(raw)
    except json_body.TooDeep:
        raise InputRefused(f"{path}: nested more than {json_body.MAX_DEPTH} levels") from None
    except ValueError:
        raise InputRefused(
            f"{path}: not valid JSON (UTF-8, no NaN or Infinity, integers within 64 bits)"
        ) from None
    if not isinstance(document, dict):
        raise InputRefused(f"{path}: not a JSON object (a CDS Hooks request or a FHIR Bundle)")
    return document


def _serve(args: argparse.Namespace) -> int:
    if args.production:
        from cds_service.serving import serve_production

        return serve_production(args.host, args.port)
    from cds_service import create_app
    from cds_service.config import load_config
    from cds_service.ops.logs import configure_logging
    from cds_service.ops.startup import check_startup

    check_startup(load_config(), [args.host])
    configure_logging()
    app = create_app()
    app.run(host=args.host, port=args.port, threaded=True)
    return 0


def _request_from_bundle(
    bundle: dict[str, Any], hook: str, templates: dict[str, str]
) -> dict[str, Any]:
    """A CDS Hooks request whose prefetch holds one patient's Bundle, split per template by
    resource type (every Observation key gets the Observations; the rules pick by code)."""
    resources = flatten(bundle)
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if len(patients) != 1:
        raise InputRefused("the Bundle must hold exactly one Patient")
    patient = patients[0]
    if not isinstance(patient.get("id"), str) or not patient["id"]:
        raise InputRefused("the Bundle's Patient has no id")
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        resource_type = template.split("?")[0].split("/")[0]
        if resource_type == "Patient":
            prefetch[key] = patient
            continue
        matches = [r for r in resources if r.get("resourceType") == resource_type]
        prefetch[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in matches],
        }
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/cli", "patientId": patient["id"]},
        "prefetch": prefetch,
    }


def _print_cards(cards: list[dict[str, Any]]) -> None:
    if not cards:
        print("No cards: nothing to say for this patient.")
    for card in cards:
        topic = card["source"]["topic"]["code"]
        print(f"[{card['indicator'].upper()}] {topic}: {card['summary']}")
        print("  " + card["detail"].replace("\n", "\n  "))
        for suggestion in card.get("suggestions", []):
            print(f"  -> suggestion: {suggestion['label']}")
        print()


def _evaluate(args: argparse.Namespace) -> int:
    from cds_service.config import load_config
    from cds_service.engine import evaluate
    from cds_service.fhir.gather import PreconditionFailed
    from cds_service.protocol.request import BadRequest, parse_request
    from cds_service.services import load_site

    # No app and no database: evaluating a file touches nothing but the file.
    config = load_config()
    knowledge, services = load_site(config.site_dir, config.rule_modes)
    document = read_document(args.file, config.max_content_length)
    hook = document.get("hook") or args.hook
    service = next(
        (
            s
            for s in services.values()
            if s.hook == hook and (not args.service or s.id == args.service)
        ),
        None,
    )
    if service is None:
        print(f"no service answers the {hook} hook", file=sys.stderr)
        return 2
    if document.get("resourceType") == "Bundle":
        document = _request_from_bundle(document, hook, service.prefetch)
    try:
        now = datetime.fromisoformat(args.now.replace("Z", "+00:00")) if args.now else None
    except ValueError:
        raise InputRefused(f"--now {args.now!r} is not an ISO date-time") from None
    if now is not None and now.tzinfo is None:
        raise InputRefused(f"--now {args.now!r} needs a time zone (Z or +hh:mm)")
    try:
        request = parse_request(document, service.hook)
        result = evaluate(service, request, knowledge, config, now or datetime.now(UTC))
    except BadRequest as exc:
        print(f"invalid request: {exc}", file=sys.stderr)
        return 2
    except PreconditionFailed as exc:
        print(f"412 precondition failed: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps({"cards": result.cards}, indent=2))
    else:
        _print_cards(result.cards)
    return 0


def _fixture(args: argparse.Namespace) -> int:
    from cds_service.config import Settings

    document = read_document(args.file, Settings.max_content_length)
    if not isinstance(document.get("hook"), str):
        raise InputRefused(f"{args.file}: not a CDS Hooks request (no 'hook')")
    try:
        moved = replay_now(document)
    except (ValueError, OverflowError):  # 2026-02-30, or a date moved past year 9999
        raise InputRefused(f"{args.file}: holds a date that cannot be moved to today") from None
    print(json.dumps(moved, indent=2))
    return 0


def _check_site(args: argparse.Namespace) -> int:
    """Load a site profile as start-up would (every file checked) and say what it changes."""
    from cds_service.knowledge import load_knowledge
    from cds_service.knowledge.site import read_site_profile
    from cds_service.services import load_site

    knowledge, services = load_site(args.folder)
    packaged = load_knowledge()
    codes = read_site_profile(args.folder).codes
    print(f"{args.folder}: a valid site profile; knowledge version {knowledge.version}")
    for kind, changed, before in (
        ("threshold", knowledge.thresholds, packaged.thresholds),
        ("clinical switch", knowledge.settings, packaged.settings),
    ):
        for name, value in changed.items():
            if value != before[name]:
                print(f"  {kind} {name}: {before[name]!r} -> {value!r}")
    for section, local in vars(codes).items():
        for code in local:
            print(f"  local {section[:-1]} code {code.system}|{code.code} -> {code.meaning}")
    print(f"  services: {', '.join(services)}")
    return 0


def _feedback_report(args: argparse.Namespace) -> int:
    from datetime import date

    from cds_service.config import load_config
    from cds_service.governance.report import report_main

    since = date.fromisoformat(args.since) if args.since else None
    print(report_main(load_config().database_url, args.format, since), end="")
    return 0


def _governance_report(args: argparse.Namespace) -> int:
    from datetime import date, timedelta

    from cds_service.config import load_config
    from cds_service.governance.burden import Period
    from cds_service.governance.tables import governance_report_main

    try:
        last = date.fromisoformat(args.to) if args.to else datetime.now(UTC).date()
        first = date.fromisoformat(args.since) if args.since else last - timedelta(days=27)
    except ValueError:
        print("cds-service: --from and --to are dates, e.g. 2026-01-31", file=sys.stderr)
        return 2
    try:
        period = Period(first, last, args.service)
    except ValueError as error:
        print(f"cds-service: --from and --to: {error}", file=sys.stderr)
        return 2
    print(governance_report_main(load_config(), period, args.format, args.table), end="")
    return 0


def _settings(args: argparse.Namespace) -> int:
    """The tables of every setting, as docs/configuration.md holds them (or written there)."""
    from pathlib import Path

    from cds_service.config import documentation_table, with_documentation_table

    if args.update:
        page = Path(args.update)
        page.write_text(with_documentation_table(page.read_text(encoding="utf-8")))
        return 0
    print(documentation_table(), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cds-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the CDS service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--production", action="store_true", help="run gunicorn (cds_service/ops/gunicorn_conf.py)"
    )
    serve.set_defaults(run=_serve)
    evaluate = commands.add_parser("evaluate", help="print the cards for a request or Bundle")
    evaluate.add_argument("file", help="a CDS Hooks request JSON, or a FHIR Bundle of one patient")
    evaluate.add_argument("--hook", default=PATIENT_VIEW, help="hook for a Bundle")
    evaluate.add_argument("--service", help="service id when several answer the hook")
    evaluate.add_argument("--json", action="store_true", help="print the CDS Hooks response")
    evaluate.add_argument(
        "--now",
        help="evaluate as of this ISO time (fixtures: "
        f"{FIXTURE_ANCHOR.isoformat().replace('+00:00', 'Z')})",
    )
    evaluate.set_defaults(run=_evaluate)
    fixture = commands.add_parser("fixture", help="print a fixture request moved to today")
    fixture.add_argument("file")
    fixture.set_defaults(run=_fixture)
    check_site = commands.add_parser(
        "check-site", help="check a site profile folder (CDS_SITE_DIR) and list its changes"
    )
    check_site.add_argument("folder")
    check_site.set_defaults(run=_check_site)
    report = commands.add_parser("feedback-report", help="card outcomes per rule and week")
    report.add_argument("--format", choices=["text", "json", "csv"], default="text")
    report.add_argument("--since", help="first day (YYYY-MM-DD)")
    report.set_defaults(run=_feedback_report)
    governance = commands.add_parser(
        "governance-report",
        help="per rule: live and silent cards per 100 calls, patients, outcomes, weekly trend",
    )
    governance.add_argument("--from", dest="since", help="first day (YYYY-MM-DD; default: 4 weeks)")
    governance.add_argument("--to", help="last day, included (YYYY-MM-DD; default: today, UTC)")
    governance.add_argument("--service", help="one service id (default: every service)")
    governance.add_argument("--format", choices=["text", "json", "csv"], default="text")
    governance.add_argument(
        "--table", choices=["rules", "weeks", "reasons"], help="one table (CSV: default rules)"
    )
    governance.set_defaults(run=_governance_report)
    settings = commands.add_parser("settings", help="print the tables of every setting (markdown)")
    settings.add_argument(
        "--update", metavar="FILE", help="write them between the markers of FILE instead"
    )
    settings.set_defaults(run=_settings)
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run  # each subcommand's set_defaults
    from cds_service.config import ConfigError

    try:
        return run(args)
    except ConfigError as error:  # one line naming the setting, not a traceback
        print(f"cds-service: invalid setting: {error}", file=sys.stderr)
        return 2
    except InputRefused as error:
        print(f"cds-service: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
