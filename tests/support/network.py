"""Local processes and ports for tests and benchmarks that start real servers."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def worker_pids(pid: int) -> list[int]:
    """The child processes of `pid` (gunicorn's workers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def eventually(condition: Callable[[], object], seconds: float = 15.0) -> bool:
    """Whether `condition()` becomes true within `seconds` (a wait, not a timing check)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())
