"""Collects the results.json of many runs (a multirun sweep, or any directories) into one table.

    python -m dann.train -m +experiment=mnist_m seed=0,1,2 optimizer.lr=0.01,0.003
    python scripts/collect_results.py multirun/2026-11-26/10-00-00 [--metric target_test_accuracy] [--csv out.csv]

Runs are found under the given directories (any depth) by their results.json and grouped
by every config value that differs between them, except seeds (`seed`, `data.seed`); each group gets a row
with its settings, the number of runs, and the mean, standard deviation, minimum and
maximum of the metric. Unfinished runs (no results.json) are counted and listed apart.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from dann.grid import markdown_table
from dann.runs import CONFIG_FILE, NOT_COMPARED, load_config, load_results

STATISTICS = ("mean", "std", "min", "max")


def find_runs(roots: list[Path]) -> tuple[list[dict], list[Path]]:
    """`({"dir", "config" (flat dict), "results"}, ...)` of finished runs under `roots`, and the unfinished run directories."""
    finished, unfinished = [], []
    for config_path in sorted(path for root in roots for path in root.rglob(CONFIG_FILE) if path.parent.name != ".hydra"):
        run_dir = config_path.parent
        results = load_results(run_dir)
        if results is None:
            unfinished.append(run_dir)
            continue
        finished.append({"dir": run_dir, "config": _flatten(OmegaConf.to_container(load_config(run_dir))), "results": results})
    return finished, unfinished


def summarise(runs: list[dict], metric: str) -> tuple[list[str], list[dict]]:
    """The config keys that vary between runs (seed excluded), and one row per setting of them."""
    keys = sorted(key for key in {key for run in runs for key in run["config"]} - set(NOT_COMPARED) if key.split(".")[-1] != "seed")
    varying = [key for key in keys if len({json.dumps(run["config"].get(key)) for run in runs}) > 1]
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(tuple(json.dumps(run["config"].get(key)) for key in varying), []).append(run)
    rows = []
    for setting, members in groups.items():
        values = np.array([member["results"][metric] for member in members], dtype=float)
        rows.append(
            {
                **{key: json.loads(value) for key, value in zip(varying, setting)},
                "runs": len(values),
                "seeds": " ".join(str(member["config"].get("seed")) for member in members),
                "mean": values.mean(),
                "std": values.std(ddof=1) if len(values) > 1 else float("nan"),
                "min": values.min(),
                "max": values.max(),
            }
        )
    return varying, sorted(rows, key=lambda row: -row["mean"])


def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", type=Path, nargs="+", help="directories holding run directories")
    parser.add_argument("--metric", default="target_test_accuracy", help="a key of results.json")
    parser.add_argument("--csv", type=Path, help="also write the table here")
    args = parser.parse_args()
    runs, unfinished = find_runs(args.roots)
    if not runs:
        sys.exit(f"no finished runs (results.json) under {', '.join(map(str, args.roots))}")
    missing = [str(run["dir"]) for run in runs if args.metric not in run["results"]]
    if missing:
        sys.exit(f"--metric {args.metric} is not in the results.json of {missing[0]} (and {len(missing) - 1} more)")
    varying, rows = summarise(runs, args.metric)
    columns = [*varying, "runs", "seeds", *STATISTICS]
    print(
        f"{args.metric} over {len(runs)} finished runs"
        + (f"; {len(unfinished)} unfinished: {', '.join(map(str, unfinished))}" if unfinished else "")
    )
    print(markdown_table(columns, ([f"{row[c]:.4f}" if c in STATISTICS else row[c] for c in columns] for row in rows)))
    if args.csv:
        with open(args.csv, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
