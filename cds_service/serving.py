"""The launcher: `cds-service serve --production`, gunicorn with cds_service/ops/gunicorn_conf.py.

The settings are checked once in the master before any worker starts (ops/startup.py:
check_settings), so a bad CDS_* value stops the service with its message instead of a crash
loop of workers.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from cds_service.config import ConfigError, load_config
from cds_service.ops.startup import check_settings

CONFIG_MODULE = Path(__file__).parent / "ops" / "gunicorn_conf.py"


def _prepare_multiprocess_metrics() -> None:
    """Workers write their metrics to files in PROMETHEUS_MULTIPROC_DIR; /metrics sums them.
    The directory must start empty, or a restarted server would add up stale counts."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="cds-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def _gunicorn_settings() -> dict[str, Any]:
    """The names gunicorn_conf.py defines (from the GUNICORN_* settings)."""
    namespace: dict[str, Any] = {"__file__": str(CONFIG_MODULE)}
    exec(compile(CONFIG_MODULE.read_text(), str(CONFIG_MODULE), "exec"), namespace)
    return namespace


def serve_production(host: str, port: int) -> int:
    try:
        check_settings([host], load_config().gunicorn_workers)
    except ConfigError as error:
        print(f"cds-service: invalid setting: {error}", file=sys.stderr)
        return 2
    settings = _gunicorn_settings()
    _prepare_multiprocess_metrics()
    from gunicorn.app.base import BaseApplication

    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    class _Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("config", str(CONFIG_MODULE))
            for name, value in settings.items():
                if name in self.cfg.settings and value is not None:
                    self.cfg.set(name, value)
            self.cfg.set("bind", [bind])

        def load(self) -> Any:
            from cds_service import create_app
            from cds_service.fhir import validation
            from cds_service.ops.logs import configure_logging
            from cds_service.record import units

            configure_logging()
            app = create_app()
            # In each worker, so no request waits ~1 s for the UCUM registry or ~0.25 s for
            # the FHIR model classes.
            units.warm_up()
            validation.warm_up()
            return app

    _Server().run()
    return 0
