"""The time one hook call may take, from its arrival (its body read) to its answer.

CDS_FHIR_DEADLINE_SECONDS is the whole call's budget, not only the fetch's: the FHIR calls stop
at `fetch_by`, and reading the data, the rules and the cards must be done `EVALUATION_GRACE`
later (`answer_by`), or the call is given up (HTTP 503). The grace lets a call whose data came
at the last moment still be answered (a heavy chart reads in ~0.1-0.4 s); the input limits
(`protocol.json_body`, `protocol.request`, `fhir.validation`) keep realistic inputs well within
it, and the checks between resources stop one that is not. The grace is 0.75 s, not 1 s: the
resource being read when it ends (at most ~0.2 s, fhir.validation.MAX_RESOURCE_VALUES) and the
503 still fit in one second, so no call holds a worker for more than the budget plus a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import monotonic

EVALUATION_GRACE = 0.75


class DeadlinePassed(Exception):
    """The call could not be evaluated within its deadline; the message names the stage."""


@dataclass(frozen=True)
class Deadline:
    fetch_by: float  # monotonic() seconds
    answer_by: float

    @classmethod
    def starting_now(cls, seconds: float) -> Deadline:
        fetch_by = monotonic() + seconds
        return cls(fetch_by, fetch_by + EVALUATION_GRACE)

    def check(self, stage: str) -> None:
        """DeadlinePassed when the call is past `answer_by`."""
        if monotonic() > self.answer_by:
            raise DeadlinePassed(stage)
