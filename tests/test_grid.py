import json
import subprocess

import pytest

from dann.grid import markdown_table, train_grid, train_run


def test_a_finished_run_is_read_not_trained_again(tmp_path):
    run_dir = tmp_path / "dann" / "seed3"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps({"target_test_accuracy": 0.5}))
    runs = train_grid({"dann": ["+experiment=no_such_experiment"]}, [3], tmp_path)  # would fail if it ran
    assert runs["dann"][0].results == {"target_test_accuracy": 0.5} and runs["dann"][0].run_dir == run_dir


def test_a_run_that_stops_gives_its_error_line(tmp_path, monkeypatch):
    # A stand-in for `python -m dann.train` that fails as it does (its one-line errors: tests/test_errors.py).
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\necho '[2026-01-01][dann.train][ERROR] - ValueError: trainer.steps must be >= 1'\nexit 1\n")
    fake_python.chmod(0o755)
    monkeypatch.setattr("dann.grid.sys.executable", str(fake_python))
    stopped = train_run(["+experiment=moons", "trainer.steps=0"], tmp_path / "stopped", check=False)
    assert stopped.results is None and stopped.error == "ValueError: trainer.steps must be >= 1"
    with pytest.raises(subprocess.CalledProcessError):
        train_run(["+experiment=moons", "trainer.steps=0"], tmp_path / "raised")


def test_markdown_table():
    assert markdown_table(["a", "b"], [[1, "x"], [2.5, "y"]]) == "| a | b |\n| --- | --- |\n| 1 | x |\n| 2.5 | y |"
