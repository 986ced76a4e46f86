"""What the runner judges once per call for every rule (rules/__init__.py rule_context): the
current neutrophil state and fever. Plain data: rules/assessments.py makes the judgements."""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.record import Count, Temperature


@dataclass(frozen=True)
class NeutrophilState:
    """The latest current WBC and ANC (clinical rules §2.4 "current" = at most 30 days old).

    `anc_unknown` is true when no ANC comes from the latest WBC's draw or later: the
    differential is missing or older than the count that decides the current state. Such an
    older ANC is kept only as `earlier_anc` (clinical rules §2.4 "ANC unknown", v3: an old
    differential does not outlive a newer count), never as `anc`.
    """

    wbc: Count | None
    anc: Count | None
    anc_unknown: bool
    earlier_anc: Count | None = None
    # ANC <= WBC, so with ANC unknown a WBC below the CTCAE grade 4 leukopenia limit (1.0)
    # bounds the ANC below it too: treated as severe neutropenia. The same threshold is the
    # lower end of LEUKOPENIA_MONITOR (b), so the two cards meet without a gap.
    anc_below_one_by_wbc: bool = False


@dataclass(frozen=True)
class Fever:
    description: str
    readings: tuple[Temperature, ...]
