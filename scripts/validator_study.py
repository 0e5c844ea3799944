"""Which label-free validator picks good checkpoints? Every evaluation of a sweep, each validator against target accuracy.

    python scripts/validator_study.py --data moons                  # runs the sweep (minutes), then the table
    python scripts/validator_study.py --data mnist_m --runs-dir runs/validator_study
    python scripts/validator_study.py --sweep-dir multirun/2026-11-26/10-00-00   # any finished sweep

The sweep (`SWEEPS`, a Hydra multirun of `python -m dann.train`; finished runs are not
trained again) evaluates often, and every evaluation of every run is a checkpoint a
validator could pick: its label-free criteria (`dann.selection.VALIDATORS`) and its target
test accuracy are in the run's `metrics.jsonl`. For each validator the table gives:

  rank corr.   Spearman's correlation with target accuracy over all checkpoints (signed so
               that higher is better for every validator)
  per run      the mean target accuracy of the checkpoint it picks within each run, beside
               `last` (each run's final checkpoint) and the oracle (each run's best)
  sweep pick   the target accuracy of the checkpoint it picks among all the sweep's
               checkpoints (hyperparameters and seeds included), beside the oracle's

Target labels are read only here, to score the validators, never by them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from dann.grid import markdown_table
from dann.runs import METRICS_FILE, load_metrics
from dann.selection import VALIDATORS

SWEEPS = {
    "moons": ["+experiment=moons", "trainer.eval_every=200", "optimizer.lr=0.01,0.05,0.2", "schedule.adaptation.scale=0.3,1,3", "seed=0,1"],
    "mnist_m": [
        "+experiment=mnist_m",
        "trainer.steps=3000",
        "trainer.eval_every=500",
        "optimizer.lr=0.005,0.02",
        "algorithm.target_entropy_weight=0,0.5",
        "schedule.adaptation.scale=0.3,1",
    ],
}


def run_sweep(data: str, sweep_dir: Path, overrides: list[str]) -> None:
    command = [sys.executable, "-m", "dann.train", "-m", *SWEEPS[data], f"hydra.sweep.dir={sweep_dir}", "trainer.plots=false", *overrides]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def read_checkpoints(sweep_dir: Path) -> list[list[dict]]:
    """Each run's evaluation records, in order, for every run directory under `sweep_dir`."""
    runs = []
    for metrics in sorted(sweep_dir.rglob(METRICS_FILE)):
        evaluations = [record for record in load_metrics(metrics.parent) if "target_test_accuracy" in record]
        if evaluations:
            runs.append(evaluations)
    if not runs:
        raise SystemExit(f"no run with evaluations under {sweep_dir}")
    return runs


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (ties share their mean rank)."""
    return float(np.corrcoef(_ranks(x), _ranks(y))[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    _, inverse = np.unique(values, return_inverse=True)
    return np.bincount(inverse, ranks)[inverse] / np.bincount(inverse)[inverse]


def study(runs: list[list[dict]]) -> list[dict]:
    """One row per validator (and `last`, `oracle`): rank correlation, per-run pick, sweep pick."""
    every = [record for run in runs for record in run]
    accuracy = np.array([record["target_test_accuracy"] for record in every])
    rows = [
        {"validator": "oracle (reads target labels)", "per_run": np.mean([max(r["target_test_accuracy"] for r in run) for run in runs]),
         "sweep": accuracy.max()},
        {"validator": "last", "per_run": np.mean([run[-1]["target_test_accuracy"] for run in runs])},
    ]  # fmt: skip
    for criterion, validator in VALIDATORS.items():
        if not all(criterion in record and np.isfinite(record[criterion]) for record in every):
            continue  # not logged by these runs (older code) or not finite somewhere
        sign = 1.0 if validator.prefers == "higher" else -1.0

        def pick(records: list[dict]) -> dict:
            return max(records, key=lambda record: sign * record[criterion])

        rows.append(
            {
                "validator": criterion,
                "rank_correlation": spearman(sign * np.array([record[criterion] for record in every]), accuracy),
                "per_run": np.mean([pick(run)["target_test_accuracy"] for run in runs]),
                "sweep": pick(every)["target_test_accuracy"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(SWEEPS), default="moons")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/validator_study"))
    parser.add_argument("--sweep-dir", type=Path, help="study this finished sweep instead of running --data's")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run of the sweep, e.g. data.data_dir=...")
    args = parser.parse_args()

    sweep_dir = args.sweep_dir
    if sweep_dir is None:
        sweep_dir = args.runs_dir / args.data
        run_sweep(args.data, sweep_dir, args.overrides)
    runs = read_checkpoints(sweep_dir)
    print(f"\n{sweep_dir}: {len(runs)} runs, {sum(map(len, runs))} checkpoints (evaluations)\n")
    columns = ["validator", "rank corr. with target acc.", "per run: mean target acc. of its pick", "sweep pick: target acc."]
    keys = ("rank_correlation", "per_run", "sweep")
    print(markdown_table(columns, ([row["validator"], *(f"{row[k]:.4f}" if k in row else "n/a" for k in keys)] for row in study(runs))))


if __name__ == "__main__":
    main()
