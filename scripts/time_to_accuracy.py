"""Time to accuracy: wall seconds from the command's start until the target test accuracy first reaches a threshold.

    python scripts/time_to_accuracy.py --threshold 0.90                          # +experiment=mnist_m
    python scripts/time_to_accuracy.py --threshold 0.90 -- trainer.steps=3000 trainer.precision=mixed_bfloat16

Runs `python -m dann.train +experiment=mnist_m trainer.eval_every=EVERY OVERRIDES` in a fresh
run directory, then reads each evaluation's `elapsed_seconds` (since the command started: its
start-up, data loading, tracing, training and the evaluations before) from `metrics.jsonl`.
Prints one line per evaluation, then the seconds to the threshold (or that it was not reached)
and the final accuracy. Evaluations every `--eval-every` steps resolve the moment; each costs
seconds of its own (test accuracies, label-free validators, health), so the seconds without
them (each evaluation's `eval_seconds` subtracted) are printed too.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
from pathlib import Path

from dann.grid import train_run
from dann.runs import load_metrics, load_results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, default=0.90, help="target test accuracy to reach")
    parser.add_argument("--experiment", default="mnist_m")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between evaluations")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/time_to_accuracy"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the experiment")
    args = parser.parse_args()
    shutil.rmtree(args.run_dir, ignore_errors=True)
    settings = [f"+experiment={args.experiment}", f"trainer.eval_every={args.eval_every}", "trainer.plots=false", "trainer.progress=false"]
    run = train_run([*settings, *args.overrides], args.run_dir, check=False)
    if run.error is not None:
        print(f"the run failed ({run.error}); see {args.run_dir}/train.log")
        return 1
    evaluations = [record for record in load_metrics(args.run_dir) if "target_test_accuracy" in record]
    evaluating = itertools.accumulate(record["eval_seconds"] for record in evaluations)
    reached = None
    for record, evaluated in zip(evaluations, evaluating):
        now, accuracy = record["elapsed_seconds"], record["target_test_accuracy"]
        print(f"{now:8.1f} s ({now - evaluated:7.1f} s without evaluations)  step {record['step']:>6}  target accuracy {accuracy:.4f}")
        if reached is None and accuracy >= args.threshold:
            reached = (now, now - evaluated)
    results = load_results(args.run_dir)
    verdict = f"did not reach {args.threshold}"
    if reached is not None:
        verdict = f"reached {args.threshold} after {reached[0]:.1f} s ({reached[1]:.1f} s without evaluations)"
    print(f"{verdict}; final target accuracy {results['target_test_accuracy']:.4f} "
          f"({results['train_seconds']:.1f} s training, {results['eval_seconds']:.1f} s evaluating)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
