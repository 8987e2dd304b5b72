"""Golden outputs: what the main commands and Slack answers say, byte for byte, on the built-in
sample, against a stored copy (tests/golden/). A change in behaviour shows up here as a diff; a
deliberate one is recorded with ``UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and reviewed in
the commit. Paths and training times are masked: they differ on every run by design."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import run_cli

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

COMMANDS = {
    "train.txt": ["train"],
    "segments.json": ["segments", "--json"],
    "segments.txt": ["segments"],
    "predict.json": ["predict", "30", "2", "150", "--json"],
    "predict.txt": ["predict", "30", "2", "150"],
    "predict-at-risk.txt": ["predict", "150", "3", "500"],
    "customer.json": ["customer", "<first>", "--json"],
    "customer.txt": ["customer", "<first>"],
    "at-risk.json": ["at-risk", "--json"],
    "at-risk.txt": ["at-risk"],
}


def _masked(text: str, *paths: Path) -> str:
    for p in paths:
        text = text.replace(str(p), "<path>")
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?", "<time>", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "<time>", text)
    return re.sub(r"\d+\.\d+ s\b", "<seconds> s", text)


def _rounded(value):
    """Floats to 10 significant digits: the engine sums in parallel, so the last bits of a sum
    may differ from run to run (what is shown never does)."""
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _check(name: str, text: str) -> None:
    if name.endswith(".json"):
        text = json.dumps(_rounded(json.loads(text)), indent=1, ensure_ascii=False) + "\n"
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"no golden copy of {name}: record it with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from tests/golden/{name}"


def _first_customer(folder: Path) -> str:
    import pandas as pd

    return str(pd.read_csv(folder / "olist_customers_dataset.csv")["customer_unique_id"].iloc[0])


@pytest.fixture(scope="module")
def golden_art(tmp_path_factory, sample_folder):
    root = tmp_path_factory.mktemp("golden")
    r = run_cli("--artifacts", str(root), "train", "--data", str(sample_folder))
    assert r.code == 0, r.err
    return root, _masked(r.out, root, sample_folder)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_commands_say_what_they_said(golden_art, sample_folder, name):
    root, trained_text = golden_art
    if name == "train.txt":
        _check(name, trained_text)
        return
    argv = [_first_customer(sample_folder) if a == "<first>" else a for a in COMMANDS[name]]
    r = run_cli("--artifacts", str(root), *argv)
    assert r.code == 0, r.err
    _check(name, _masked(r.out, root, sample_folder))


def test_slack_answers_say_what_they_said(golden_art, sample_folder):
    from bot import blocks
    from segmentation.serving.inputs import RFM
    from segmentation.serving.service import SegmentService
    from segmentation.serving.store import ModelStore

    root, _ = golden_art
    service = SegmentService(ModelStore(root))
    served = service.served()
    messages = {
        "profile": blocks.prediction(served.predict(RFM(30, 2, 150.0)), asked_by="U123"),
        "customer": blocks.customer(served.customer(_first_customer(sample_folder))),
        "segments": blocks.segments(served),
        "at_risk": blocks.at_risk(served.at_risk(), served.terms),
        "model": blocks.model_info(served),
    }
    text = json.dumps(messages, indent=1, sort_keys=True, default=str, ensure_ascii=False)
    _check("slack.json", _masked(text, root, sample_folder))
