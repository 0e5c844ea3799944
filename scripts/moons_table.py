"""Runs +experiment=moons and +experiment=moons_source_only over several seeds and prints the table.

    python scripts/moons_table.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from dann.config import compose_config
from dann.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    logging.disable(logging.INFO)
    print(f"{'experiment':<20} {'target acc mean':>15} {'std':>6} {'source acc':>10} {'train s':>8}   per seed")
    with tempfile.TemporaryDirectory() as scratch:
        for experiment in ("moons_source_only", "moons"):
            runs = [
                train(compose_config([f"+experiment={experiment}", f"seed={seed}", "trainer.plots=false"]), Path(scratch) / f"{experiment}-{seed}")
                for seed in args.seeds
            ]
            target = np.array([run["target_test_accuracy"] for run in runs])
            source = np.mean([run["source_test_accuracy"] for run in runs])
            seconds = np.median([run["train_seconds"] for run in runs])
            print(
                f"{experiment:<20} {target.mean():>15.3f} {target.std(ddof=1):>6.3f} {source:>10.3f} {seconds:>8.1f}   "
                + " ".join(f"{value:.3f}" for value in target)
            )


if __name__ == "__main__":
    main()
