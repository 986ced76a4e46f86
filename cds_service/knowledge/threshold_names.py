"""The names of the clinical thresholds (knowledge/thresholds.yaml), as a type: a misspelt
name in `ctx.threshold("...")` is a mypy error, not a KeyError on the first patient it would
have decided. tests/knowledge/test_threshold_names.py keeps this list equal to the file's keys."""

from __future__ import annotations

from typing import Literal, get_args

ThresholdName = Literal[
    "leukopenia_wbc",
    "severe_leukopenia_wbc",
    "grade4_leukopenia_wbc",
    "mild_neutropenia_anc",
    "moderate_neutropenia_anc",
    "severe_neutropenia_anc",
    "lymphopenia_alc",
    "profound_lymphopenia_alc",
    "fever_single_cel",
    "fever_sustained_cel",
    "fever_sustained_minutes",
    "fever_window_hours",
    "febrile_neutropenia_anc",
    "anc_unknown_febrile_wbc",
    "profound_neutropenia_anc",
    "febrile_anc_repeat_days",
    "current_days",
    "persistent_min_days_apart",
    "dose_review_wbc",
    "dose_review_anc",
    "dose_review_anc_mycophenolate",
    "dose_review_alc",
    "dose_review_drop_fraction",
    "baseline_median_days",
    "stable_days",
    "lymphopenia_very_low_alc",
    "lymphopenia_fall_fraction",
    "lymphopenia_episode_days",
    "azathioprine_max_mg_per_kg_day",
    "weight_stale_days",
    "duffy_null_anc",
    "duffy_null_anc_mycophenolate",
    "duffy_null_wbc",
    "duffy_null_reference_anc",
    "duffy_null_drop_fraction",
    "duffy_null_drop_absolute",
    "refractory_window_days",
    "refractory_wbc",
    "refractory_anc",
    "leukocytosis_wbc",
    "recent_tier_a_stop_days",
    "new_drug_days",
    "exposure_run_gap_days",
    "cyclophosphamide_nadir_days",
    "stale_cbc_new_drug_days",
    "stale_cbc_days",
    "data_quality_lookback_days",
]

THRESHOLD_NAMES: frozenset[str] = frozenset(get_args(ThresholdName))
