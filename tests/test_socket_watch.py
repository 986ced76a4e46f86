"""The suite's guard against sockets left to the garbage collector (tests/support/sockets.py):
it must find a socket caught in a reference cycle, and only that."""

from __future__ import annotations

import socket
import warnings

from tests.support.sockets import WATCH


def _left_in_a_cycle() -> None:
    holder: dict[str, object] = {"socket": socket.socket()}
    holder["self"] = holder  # freed only by a collection


def test_a_socket_left_in_a_reference_cycle_is_found():
    WATCH.start()
    _left_in_a_cycle()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the collection finalizes it open
        assert WATCH.left_to_the_collector() == 1


def test_closed_and_still_held_sockets_are_not_counted():
    WATCH.start()
    with socket.socket():
        pass
    held = socket.socket()

    assert WATCH.left_to_the_collector() == 0
    held.close()
