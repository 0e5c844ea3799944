"""Runs the MNIST -> MNIST-M experiments over seeds and prints the results table beside the paper's.

    python scripts/mnist_m_table.py --seeds 0 1 2 --runs-dir runs/mnist_m_table

Each run is `python -m dann.train +experiment=NAME seed=S hydra.run.dir=<runs-dir>/NAME/seed<S>`;
a run whose results.json exists is not repeated, so the script can be stopped and resumed.
Build the dataset first (the first run does it otherwise, and its wall time includes the build):
`python -c "import dann.data as d; d.dataset_builder('mnist_m')"`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from dann.benchmark import device_name

PAPER = {  # MNIST-M test accuracy, Ganin et al., JMLR 2016, table 2
    "mnist_m_source_only": 0.5225,
    "mnist_m_paper": 0.7666,
    "mnist_m": 0.7666,
    "mnist_m_target_only": 0.9596,
}
ROWS = {
    "mnist_m_source_only": "source only (lower bound)",
    "mnist_m_paper": "DANN, paper recipe",
    "mnist_m": "DANN, dann's default",
    "mnist_m_target_only": "train on target (upper bound)",
}


def run(experiment: str, seed: int, runs_dir: Path, overrides: list[str]) -> dict:
    run_dir = runs_dir / experiment / f"seed{seed}"
    results_path = run_dir / "results.json"
    if not results_path.exists():
        command = [sys.executable, "-m", "dann.train", f"+experiment={experiment}", f"seed={seed}", f"hydra.run.dir={run_dir}", *overrides]
        print("$", " ".join(command[1:]), flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        (run_dir / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    results = json.loads(results_path.read_text())
    results["wall_seconds"] = float((run_dir / "wall_seconds.txt").read_text())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--experiments", nargs="+", default=list(ROWS))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/mnist_m_table"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. data.data_dir=...")
    args = parser.parse_args()

    table = {}
    for experiment in args.experiments:
        runs = [run(experiment, seed, args.runs_dir, args.overrides) for seed in args.seeds]
        table[experiment] = runs
    print(f"\nMNIST -> MNIST-M test accuracy; {device_name()}, TensorFlow {tf.__version__}, seeds {args.seeds}\n")
    print("| method | experiment | paper | target acc. mean ± std | per seed | source acc. | PAD inputs -> features | wall s / run (median) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for experiment, runs in table.items():
        target = np.array([r["target_test_accuracy"] for r in runs])
        spread = f" ± {target.std(ddof=1):.4f}" if len(runs) > 1 else ""
        print(
            f"| {ROWS.get(experiment, experiment)} | `{experiment}` | {PAPER.get(experiment, float('nan')):.4f} "
            f"| {target.mean():.4f}{spread} | {' '.join(f'{t:.4f}' for t in target)} "
            f"| {np.mean([r['source_test_accuracy'] for r in runs]):.4f} "
            f"| {np.mean([r['proxy_a_distance_inputs'] for r in runs]):.2f} -> {np.mean([r['proxy_a_distance_features'] for r in runs]):.2f} "
            f"| {np.median([r['wall_seconds'] for r in runs]):.0f} |"
        )


if __name__ == "__main__":
    main()
