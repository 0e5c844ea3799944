"""Runs +experiment=moons with every algorithm over several seeds and prints the table.

python scripts/moons_table.py --seeds 0 1 2 3 4
python scripts/moons_table.py --algorithms dann vada --seeds 0 1 2 algorithm.vat_radius=0.1
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from dann.config import CONFIG_DIR, compose_config
from dann.experiment import train

ALGORITHMS = ("source_only", "dann", "cdan", "cdan_e", "vada", "dirt_t", "target_only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--algorithms", nargs="+", default=ALGORITHMS, choices=sorted(p.stem for p in (CONFIG_DIR / "algorithm").glob("*.yaml"))
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    print(f"{'algorithm':<12} {'target acc mean':>15} {'std':>6} {'source acc':>10} {'train s':>8}   per seed")
    with tempfile.TemporaryDirectory() as scratch:
        for algorithm in args.algorithms:
            overrides = ["+experiment=moons", f"algorithm={algorithm}", "trainer.plots=false", *args.overrides]
            runs = [train(compose_config([*overrides, f"seed={seed}"]), Path(scratch) / f"{algorithm}-{seed}") for seed in args.seeds]
            target = np.array([run["target_test_accuracy"] for run in runs])
            source = np.mean([run["source_test_accuracy"] for run in runs])
            seconds = np.median([run["train_seconds"] for run in runs])
            spread = target.std(ddof=1) if len(runs) > 1 else float("nan")
            print(
                f"{algorithm:<12} {target.mean():>15.3f} {spread:>6.3f} {source:>10.3f} {seconds:>8.1f}   "
                + " ".join(f"{value:.3f}" for value in target)
            )


if __name__ == "__main__":
    main()
