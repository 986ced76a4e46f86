"""Threshold names are a type (knowledge/threshold_names.py) so mypy rejects a misspelt
`ctx.threshold("...")`; the type must name exactly the thresholds of the file."""

from __future__ import annotations

from importlib import resources
from typing import get_args

import yaml

from cds_service.knowledge import ThresholdName, load_knowledge
from cds_service.knowledge.threshold_names import THRESHOLD_NAMES


def test_the_threshold_name_type_is_the_files_thresholds():
    text = resources.files("cds_service.knowledge").joinpath("thresholds.yaml").read_text()
    in_file = list(yaml.safe_load(text)["thresholds"])
    assert list(get_args(ThresholdName)) == in_file  # same names, same order as the file
    assert THRESHOLD_NAMES == set(in_file) == set(load_knowledge().thresholds)
