"""Time to accuracy: wall seconds from the command's start until the target test accuracy first reaches a threshold.

    python scripts/time_to_accuracy.py --threshold 0.90                          # +experiment=mnist_m
    python scripts/time_to_accuracy.py --threshold 0.90 -- trainer.steps=3000 trainer.precision=mixed_bfloat16

Runs `python -m dann.train +experiment=mnist_m trainer.eval_every=EVERY trainer.log_every=EVERY
OVERRIDES` in a fresh run directory and timestamps each evaluation line as the run prints it, so the seconds include
what a user waits for: start-up, data loading, tracing, training and the evaluations before.
Prints one line per evaluation, then the seconds to the threshold (or that it was not reached)
and the final accuracy. Evaluations every `--eval-every` steps resolve the moment; each costs
seconds of its own (test accuracies, label-free validators, health), so the seconds without
them are printed too (each evaluation timed from the training line logged just before it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

EVALUATION = re.compile(r"step (\d+)/\d+ .*target_test_accuracy=([0-9.]+)")
TRAINING = re.compile(r"step (\d+)/\d+  label_loss=")  # logged just before the evaluation of the same step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, default=0.90, help="target test accuracy to reach")
    parser.add_argument("--experiment", default="mnist_m")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between evaluations")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/time_to_accuracy"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the experiment")
    args = parser.parse_args()
    shutil.rmtree(args.run_dir, ignore_errors=True)
    # Training lines logged at each evaluation's step: each evaluation is timed from the one before it.
    every = [f"trainer.eval_every={args.eval_every}", f"trainer.log_every={args.eval_every}"]
    command = [sys.executable, "-m", "dann.train", f"+experiment={args.experiment}", *every]
    command += ["trainer.plots=false", "trainer.progress=false", *args.overrides, f"hydra.run.dir={args.run_dir}"]
    print(" ".join(command[1:]))
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    reached = None
    logged = evaluating = 0.0  # when the last training line appeared; seconds spent evaluating so far
    for line in process.stdout:
        now = time.perf_counter() - start
        if TRAINING.search(line):
            logged = now
        match = EVALUATION.search(line)
        if match:
            evaluating += now - logged
            step, accuracy = int(match.group(1)), float(match.group(2))
            print(
                f"{now:8.1f} s ({now - evaluating:7.1f} s without evaluations)  step {step:>6}  target accuracy {accuracy:.4f}", flush=True
            )
            if reached is None and accuracy >= args.threshold:
                reached = (now, now - evaluating)
    if process.wait():
        print(f"the run failed (exit status {process.returncode}); see {args.run_dir}/train.log")
        return 1
    results = json.loads((args.run_dir / "results.json").read_text())
    total = time.perf_counter() - start
    verdict = f"did not reach {args.threshold}"
    if reached is not None:
        verdict = f"reached {args.threshold} after {reached[0]:.1f} s ({reached[1]:.1f} s without evaluations)"
    print(f"{verdict}; final target accuracy {results['target_test_accuracy']:.4f} after {total:.1f} s "
          f"({results['train_seconds']:.1f} s of it training)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
