"""Runs the MNIST -> MNIST-M experiments over seeds and prints the results table beside the paper's.

    python scripts/mnist_m_table.py --seeds 0 1 2 --runs-dir runs/mnist_m_table
    python scripts/mnist_m_table.py --rows "mnist_m algorithm=vada" --seeds 0
    python scripts/mnist_m_table.py --rows mnist_m_genuine --data mnist_m_genuine

A row is an experiment and optional overrides, e.g. `"mnist_m algorithm=vada"`; each run is
`python -m dann.train +experiment=NAME [OVERRIDES] seed=S hydra.run.dir=<runs-dir>/<row>/seed<S>`;
a run whose results.json exists is not repeated, so the script can be stopped and resumed.
`--data` runs every row on other data too, as `data=<name>` (e.g. `mnist_m_genuine`: the
genuine MNIST-M, `configs/data/`), in `<runs-dir>/<name>/<row>/seed<S>`, and gives each a
column. Build the datasets first (the first run does it otherwise, and its wall time includes
the build): `python -c "import dann.data as d; d.dataset_builder('mnist_m')"`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tensorflow as tf

from dann.devices import device_name
from dann.grid import GridRun, markdown_table, train_grid

# MNIST-M test accuracy published for each row. Ganin et al., JMLR 2016, table 2 (their network);
# VADA and DIRT-T: Shu et al., ICLR 2018, table 1, with their larger network and 80,000 steps.
# CDAN's paper reports no MNIST -> MNIST-M figure.
PAPER = {
    "mnist_m_source_only": 0.5225,
    "mnist_m_paper": 0.7666,
    "mnist_m": 0.7666,
    "mnist_m_target_only": 0.9596,
    "mnist_m algorithm=source_only": 0.5225,
    "mnist_m algorithm=target_only": 0.9596,
    "mnist_m algorithm=vada": 0.957,
    "mnist_m algorithm=dirt_t": 0.987,
    "mnist_m_genuine": 0.7666,
    "mnist_m_genuine_small_cnn": 0.946,  # their DANN on their network
    "mnist_m_genuine_vada": 0.957,
    "mnist_m_genuine_dirt_t": 0.987,
    "mnist_m_genuine_dirt_t algorithm.refinement_source_weight=0": 0.987,
}
ROWS = {
    "mnist_m_source_only": "source only (lower bound)",
    "mnist_m_paper": "DANN, paper recipe",
    "mnist_m": "DANN, dann's default",
    "mnist_m algorithm=cdan": "CDAN",
    "mnist_m algorithm=cdan_e": "CDAN+E",
    "mnist_m algorithm=vada": "VADA",
    "mnist_m algorithm=dirt_t": "DIRT-T",
    "mnist_m_target_only": "train on target (upper bound)",
    "mnist_m algorithm=source_only": "source only, dann's recipe",
    "mnist_m algorithm=target_only": "train on target, dann's recipe",
    "mnist_m_genuine": "DANN + self-training, dann's genuine MNIST-M recipe",
    "mnist_m_fast": "DANN + self-training, 1,500 steps",
    "mnist_m_fast algorithm=source_only": "source only, 1,500 steps",
    "mnist_m_genuine_small_cnn algorithm=source_only": "source only, small CNN",
    "mnist_m_genuine_small_cnn": "DANN, small CNN (lambda_d 0.01)",
    "mnist_m_genuine_small_cnn algorithm=cdan": "CDAN, small CNN",
    "mnist_m_genuine_small_cnn algorithm=cdan_e": "CDAN+E, small CNN",
    "mnist_m_genuine_small_cnn algorithm=mcc": "MCC (on DANN), small CNN",
    "mnist_m_genuine_small_cnn algorithm=im": "information maximisation (on DANN), small CNN",
    "mnist_m_genuine_vada": "VADA, small CNN",
    "mnist_m_genuine_dirt_t": "DIRT-T, small CNN (source loss kept in refinement)",
    "mnist_m_genuine_dirt_t algorithm.refinement_source_weight=0": "DIRT-T, small CNN (the paper's refinement)",
    "mnist_m_genuine_small_cnn algorithm=target_only": "train on target, small CNN",
}

# The default rows: the bounds and DANN on the synthetic MNIST-M, which is built when missing (3 seeds: about half an
# hour on 2 cores of an AMD EPYC).
PAPER_TABLE = ["mnist_m_source_only", "mnist_m_paper", "mnist_m", "mnist_m_target_only"]


def run_dir_name(row: str, data: str | None) -> str:
    """Where row `row` ("EXPERIMENT [OVERRIDE ...]") on `data` (`None`: the experiment's) runs, under the runs directory."""
    experiment, *row_overrides = row.split()
    name = "-".join([experiment, *(override.split("=", 1)[1] for override in row_overrides)])
    return name if data is None else f"{data}/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=PAPER_TABLE, help='rows, each "EXPERIMENT [OVERRIDE ...]" (default: PAPER_TABLE)')
    parser.add_argument("--data", nargs="+", help="run every row on each of these data configs too (default: each experiment's own)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/mnist_m_table"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. data.data_dir=...")
    args = parser.parse_args()

    datas = args.data or [None]
    grid = {
        run_dir_name(row, data): [f"+experiment={row.split()[0]}", *row.split()[1:], *([f"data={data}"] if data else [])]
        for row in args.rows
        for data in datas
    }
    runs = train_grid(grid, args.seeds, args.runs_dir, args.overrides)
    print(f"\nMNIST -> MNIST-M target accuracy; {device_name()}, TensorFlow {tf.__version__}, seeds {args.seeds}\n")
    columns = ["method", "command (`+experiment=...`)", "paper"]
    for data in datas:
        name = data or "experiment's data"
        columns += [f"{name}: target acc. mean ± std", "per seed", "source acc.", "PAD inputs -> features"]
        columns += ["train s / run (median)", "wall s / run (median)"]
    table = []
    for row in args.rows:
        cells = [ROWS.get(row, row), f"`{row}`", str(PAPER.get(row, "n/a"))]
        for data in datas:
            cells += _cells(runs[run_dir_name(row, data)])
        table.append(cells)
    print(markdown_table(columns, table))
    splits = {
        data or "experiment's data": sorted(
            {run.results.get("target_test_split", "test") for row in args.rows for run in runs[run_dir_name(row, data)]}
        )
        for data in datas
    }
    print("\ntarget accuracy on split:", "; ".join(f"{data}: {', '.join(names)}" for data, names in splits.items()))


def _cells(grid_runs: list[GridRun]) -> list[str]:
    """The table cells of one row's runs on one dataset."""
    runs = [run.results for run in grid_runs]
    target = np.array([r["target_test_accuracy"] for r in runs])
    spread = f" ± {target.std(ddof=1):.4f}" if len(runs) > 1 else ""
    return [
        f"{target.mean():.4f}{spread}",
        " ".join(f"{t:.4f}" for t in target),
        f"{np.mean([r['source_test_accuracy'] for r in runs]):.4f}",
        f"{np.mean([r['proxy_a_distance_inputs'] for r in runs]):.2f} -> {np.mean([r['proxy_a_distance_features'] for r in runs]):.2f}",
        f"{np.median([r['train_seconds'] for r in runs]):.0f}",
        f"{np.median([run.wall_seconds for run in grid_runs]):.0f}",
    ]


if __name__ == "__main__":
    main()
