"""Sockets a test opens and leaves to the garbage collector.

A client object caught in a reference cycle (a Flask app holding a Redis client, say) keeps
its socket open until some later collection; whether the socket is then closed by its owner
or finalized open (a ResourceWarning, an error in this suite) depends on the collection's
order, and the failure lands in whichever later test happened to collect. Watching the
sockets each test opens and collecting only when it leaves some open pins the leak, every
time, on the test that made it."""

from __future__ import annotations

import gc
import socket
import weakref
from typing import Any


class SocketWatch:
    """Made once, as WATCH below: every socket.socket made afterwards is noted while a test
    runs. (Python's audit event for new sockets would do too, but an audit hook is called
    for every audited event, and sys._getframe, which logging and pytest call all the time,
    is one.)"""

    def __init__(self) -> None:
        self._opened: list[weakref.ref[socket.socket]] = []
        self._watching = False
        make = socket.socket.__init__

        def note(sock: socket.socket, *args: Any, **kwargs: Any) -> None:
            make(sock, *args, **kwargs)
            if self._watching:
                self._opened.append(weakref.ref(sock))

        socket.socket.__init__ = note  # type: ignore[method-assign]

    def start(self) -> None:
        self._opened.clear()
        self._watching = True

    def left_to_the_collector(self) -> int:
        """How many sockets opened since start() were still open, held by nothing but
        garbage: a collection closed or freed them. Those a live object holds (a module's
        server) stay open and are not counted."""
        self._watching = False
        still_open = [ref for ref in self._opened if _is_open(ref())]
        self._opened.clear()
        if not still_open:
            return 0  # the usual case: no collection needed
        gc.collect()
        return sum(not _is_open(ref()) for ref in still_open)


def _is_open(sock: socket.socket | None) -> bool:
    return sock is not None and sock.fileno() != -1


WATCH = SocketWatch()
