"""Runs +experiment=moons with every algorithm over several seeds and prints the table.

python scripts/moons_table.py --seeds 0 1 2 3 4
python scripts/moons_table.py --algorithms dann vada --seeds 0 1 2 algorithm.vat_radius=0.1

Each run is `python -m dann.train +experiment=moons algorithm=<name> seed=<S>` (with the
row's overrides, `ROWS`) in `<runs-dir>/<row>/seed<S>`; a finished run is read, not repeated.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dann.grid import markdown_table, train_grid

# Each row: its overrides.
ROWS = {name: [f"algorithm={name}"] for name in ("source_only", "dann", "cdan", "cdan_e", "mcc", "im", "vada", "dirt_t", "target_only")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--algorithms", nargs="+", default=list(ROWS), choices=list(ROWS), help="the rows to run")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/moons_table"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_args()
    rows = {row: ["+experiment=moons", *ROWS[row], "trainer.plots=false"] for row in args.algorithms}
    table = []
    for algorithm, runs in train_grid(rows, args.seeds, args.runs_dir, args.overrides).items():
        target = np.array([run.results["target_test_accuracy"] for run in runs])
        spread = f"{target.std(ddof=1):.3f}" if len(runs) > 1 else "n/a"
        table.append(
            [
                algorithm,
                f"{target.mean():.3f}",
                spread,
                f"{np.mean([run.results['source_test_accuracy'] for run in runs]):.3f}",
                f"{np.median([run.results['train_seconds'] for run in runs]):.1f}",
                " ".join(f"{value:.3f}" for value in target),
            ]
        )
    print(markdown_table(["row", "target acc. mean", "std", "source acc.", "train s (median)", "per seed"], table))


if __name__ == "__main__":
    main()
