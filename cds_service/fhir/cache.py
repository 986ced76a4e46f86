"""FHIR answers remembered for a few seconds, per process, in memory only.

order-select then order-sign (or a chart reopened) for the same patient within seconds read the
same data; the second call then costs no FHIR round trip. An answer is found again only for the
same fhirServer, the same URL (which names the patient) and the same access token (kept as a
hash), so no request ever sees data its own token could not read. Bodies are kept as the bytes
received and parsed anew for each call: no call can change what another one reads. Bounded in
bytes (oldest out first); nothing is ever written to disk.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from time import monotonic

Key = tuple[str, str, str]


def cache_key(base_url: str, access_token: str | None, url: str) -> Key:
    token = hashlib.sha256((access_token or "").encode()).hexdigest()
    return base_url, token, url


class AnswerCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[Key, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Key) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, body = entry
            if monotonic() >= expires:
                self._drop(key)
                return None
            return body

    def put(self, key: Key, body: bytes, seconds: float, max_bytes: int) -> None:
        if seconds <= 0 or len(body) > max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (monotonic() + seconds, body)
            self._bytes += len(body)
            while self._bytes > max_bytes:
                self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: Key) -> None:
        _, body = self._entries.pop(key)
        self._bytes -= len(body)


ANSWERS = AnswerCache()
