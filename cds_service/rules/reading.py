"""How far back the rules read the Observations. The record builder leaves unparsed what lies
beyond these windows (speed: a typical chart holds years of CBCs), so a rule that reads further
back, or by another threshold, declares its window here: tests/record/test_reading_plan.py
fails for a duration threshold the rules read that is in neither list below."""

from __future__ import annotations

from cds_service.record.reading_plan import LookBack, ReadingNeeds

READING_NEEDS = ReadingNeeds(
    counts=(
        # The current WBC, ANC and ALC and the lab's critical-low flags: every count rule
        # (assessments.neutrophil_state, the LYMPHOPENIA_* rules, ORDER_NO_RECENT_CBC ...).
        LookBack("current_days"),
        # REFRACTORY_LEUKOPENIA_REFERRAL: the run of severe WBC/ANC values.
        LookBack("refractory_window_days"),
    ),
    counts_before_latest=(
        # assessments.baseline: the 6-month median (DRUG_CYTOPENIA_DOSE_REVIEW, NEUTROPENIA_*,
        # ORDER_MYELOTOXIC_LOW_COUNTS).
        LookBack("baseline_median_days"),
        # DRUG_CYTOPENIA_DOSE_REVIEW: stable for `stable_days`, judged over twice that span.
        LookBack("stable_days", times=2),
        # DRUG_CYTOPENIA_DOSE_REVIEW (v4 lymphopenia episodes): an ALC >= 0.5 in the 12 months
        # before the latest makes a new episode.
        LookBack("lymphopenia_episode_days"),
    ),
    # assessments.trend: the latest value and the 4 earlier ones the evidence lists.
    trend_results=5,
    # assessments.fever: FEBRILE_NEUTROPENIA and the fever lead of every cytopenia card.
    temperatures=(LookBack("fever_window_hours", unit="hours"),),
    # DATA_QUALITY: the results that could not be interpreted.
    unusable=(LookBack("data_quality_lookback_days"),),
    # The mg/kg lines read the newest weight and flag one older than this (clinical rules
    # §2.5, §2.6: weights are read from the FHIR server over 6 months).
    weights=(LookBack("weight_stale_days"),),
)

# Durations the rules read that reach back over no older result, and why.
NOT_LOOK_BACKS = {
    "cyclophosphamide_nadir_days": "the date of the last dose (medications are read in full)",
    "febrile_anc_repeat_days": "the age of the current ANC (FEBRILE_NEUTROPENIA)",
    "exposure_run_gap_days": "a gap between medication records (read in full), CBC_STALE",
    "new_drug_days": "the age of a start or dose increase (medications), CBC_STALE",
    "fever_sustained_minutes": "a span inside the fever window",
    "persistent_min_days_apart": "a span inside the refractory window",
    "stale_cbc_days": "the age of the latest WBC (CBC_STALE)",
    "stale_cbc_new_drug_days": "the age of the latest WBC (CBC_STALE)",
    "febrile_wbc_hours": "the age of the latest WBC (CBC_STALE, a febrile patient)",
}
