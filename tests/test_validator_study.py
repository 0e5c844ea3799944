"""scripts/validator_study.py on sweeps whose answer is known."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from tests_support import load_script

from dann.selection import VALIDATORS

validator_study = load_script("validator_study")


def _sweep(tmp_path: Path) -> Path:
    """Two runs of three evaluations: source accuracy tracks target accuracy, DEV's risk runs against it."""
    accuracies = {"0": [0.5, 0.9, 0.7], "1": [0.6, 0.8, 0.95]}
    for job, run in accuracies.items():
        (tmp_path / job).mkdir()
        records = [{"step": 10, "label_loss": 0.3}]  # a training record, ignored
        for step, accuracy in zip((10, 20, 30), run):
            records.append({"step": step, "target_test_accuracy": accuracy, **{c: accuracy for c in VALIDATORS}, "dev_risk": accuracy})
        (tmp_path / job / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path


def test_a_validator_that_tracks_target_accuracy_picks_as_the_oracle(tmp_path):
    rows = {row["validator"]: row for row in validator_study.study(validator_study.read_checkpoints(_sweep(tmp_path)))}
    assert rows["source_test_accuracy"]["rank_correlation"] == pytest.approx(1.0)
    assert rows["source_test_accuracy"]["per_run"] == rows["oracle (reads target labels)"]["per_run"] == pytest.approx((0.9 + 0.95) / 2)
    assert rows["source_test_accuracy"]["sweep"] == 0.95
    # dev_risk is "lower is better": here it equals the accuracy, so it is exactly wrong.
    assert rows["dev_risk"]["rank_correlation"] == pytest.approx(-1.0)
    assert rows["dev_risk"]["per_run"] == pytest.approx((0.5 + 0.6) / 2) and rows["dev_risk"]["sweep"] == 0.5
    assert rows["last"]["per_run"] == pytest.approx((0.7 + 0.95) / 2)


def test_spearman_ranks_ties_together():
    assert validator_study.spearman(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 2.0, 2.0, 3.0])) == pytest.approx(1.0)
    assert validator_study.spearman(np.array([1.0, 2.0, 3.0]), np.array([30.0, 20.0, 10.0])) == pytest.approx(-1.0)


def test_the_command_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["validator_study.py", "--sweep-dir", str(_sweep(tmp_path))])
    validator_study.main()
    printed = capsys.readouterr().out
    assert "2 runs, 6 checkpoints" in printed
    assert "| source_test_accuracy | 1.0000 | 0.9250 | 0.9500 |" in printed
