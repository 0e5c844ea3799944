"""Grids of training runs, for scripts that compare recipes: each run its own `python -m dann.train`
process in its own directory, a finished run read instead of trained again, and Markdown tables.

Example:
    >>> runs = train_grid({"dann": ["+experiment=moons"], "vada": ["+experiment=moons", "algorithm=vada"]}, [0, 1], Path("runs/t"))
    >>> print(markdown_table(["row", "target acc."], [[name, runs[name][0].results["target_test_accuracy"]] for name in runs]))
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from dann.runs import RESULTS_FILE

WALL_SECONDS_FILE = "wall_seconds.txt"  # the whole process, start-up and data included


@dataclass(frozen=True)
class GridRun:
    """One run of a grid: its directory, and its `results.json` or the error line that stopped it."""

    run_dir: Path
    results: dict | None
    error: str | None = None

    @property
    def wall_seconds(self) -> float:
        """Seconds the training process took, start-up included (`nan` if unknown)."""
        path = self.run_dir / WALL_SECONDS_FILE
        return float(path.read_text()) if path.exists() else float("nan")


def train_run(overrides: Sequence[str], run_dir: Path, check: bool = True) -> GridRun:
    """`python -m dann.train OVERRIDES hydra.run.dir=RUN_DIR`, unless `RUN_DIR/results.json` exists; its results.

    With `check=False` a run that stops with an error gives a `GridRun` holding the error's
    last line (the one-line message of `dann.train`); with `check=True` it raises `CalledProcessError`.
    """
    results_path = run_dir / RESULTS_FILE
    if not results_path.exists():
        command = [sys.executable, "-m", "dann.train", *overrides, f"hydra.run.dir={run_dir}"]
        print("$", " ".join(command[1:]), flush=True)
        start = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True)
        if finished.returncode:
            if check:
                raise subprocess.CalledProcessError(finished.returncode, command, finished.stdout, finished.stderr)
            errors = [line for line in (finished.stdout + finished.stderr).splitlines() if "Error" in line]
            return GridRun(run_dir, None, errors[-1].split("] - ", 1)[-1] if errors else f"exit status {finished.returncode}")
        (run_dir / WALL_SECONDS_FILE).write_text(f"{time.perf_counter() - start:.1f}\n")
    return GridRun(run_dir, json.loads(results_path.read_text()))


def train_grid(
    rows: Mapping[str, Sequence[str]], seeds: Sequence[int], runs_dir: Path, overrides: Sequence[str] = ()
) -> dict[str, list[GridRun]]:
    """Every row (`{name: overrides}`) at every seed, in `runs_dir/<name>/seed<S>`, with `overrides` added to each.

    Returns:
        `{name: [one GridRun per seed]}`, in the order given.
    """
    return {
        name: [train_run([*row, *overrides, f"seed={seed}"], runs_dir / name / f"seed{seed}") for seed in seeds]
        for name, row in rows.items()
    }


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table with a header of `columns` and one line per row (cells as `str`)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
