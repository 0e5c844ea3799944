"""Faults injected into a real training run, and whether it survives them: the evidence for "Operating runs".

    python scripts/fault_drill.py                    # 20 kill -9 points, then every other fault once
    python scripts/fault_drill.py --kills 5 --seed 1

One deterministic `python -m dann.train +experiment=moons` run is trained without faults,
then again in another directory through the faults, each followed by the same command:
  - kill -9 at `--kills` random steps (the step is drawn, the process killed once its
    metrics pass it): steps lost = the last step logged minus the step resumed from;
  - SIGTERM (a scheduler's preemption): exit status 75, nothing lost;
  - the same command started while the run trains: refused, naming the holder;
  - the latest checkpoint's data file truncated: resumed from the one before it;
  - a full disk (the run directory on a small tmpfs that fills, then grows; needs root on
    Linux, otherwise reported as skipped).
It prints one line per fault, then whether the final metrics.jsonl (its wall-clock figures aside) and results equal the
uninterrupted run's. Exits with status 1 when a fault is not survived, a kill loses more than
one checkpoint interval, or the final metrics differ.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dann.loop import EXIT_PREEMPTED
from dann.runs import CHECKPOINT_DIR, LOCK_FILE, METRICS_FILE, RESULTS_FILE, WALL_CLOCK_KEYS, load_metrics

STEPS, CHECKPOINT_EVERY = 4000, 200
OVERRIDES = [
    "+experiment=moons",
    f"trainer.steps={STEPS}",
    "trainer.log_every=10",
    "trainer.eval_every=1000",
    f"trainer.checkpoint_every={CHECKPOINT_EVERY}",
    "trainer.deterministic=true",
    "trainer.plots=false",
    "trainer.progress=false",
]
# Results that measure this process rather than what was computed.
TIMINGS = ("train_seconds", "eval_seconds", "input_wait_fraction", "resumed_from_step")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def computed_metrics(run_dir: Path) -> list[dict]:
    """The run's metrics.jsonl records without their wall-clock figures."""
    return [{key: value for key, value in record.items() if key not in WALL_CLOCK_KEYS} for record in load_metrics(run_dir)]


def command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "dann.train", *OVERRIDES, f"hydra.run.dir={run_dir}"]


def start(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(command(run_dir), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command(run_dir), env=ENV, capture_output=True, text=True, timeout=600)


def last_logged_step(run_dir: Path) -> int:
    """The step of the last complete line of metrics.jsonl, 0 before any."""
    path = run_dir / METRICS_FILE
    steps = [0]
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            steps.append(json.loads(line)["step"])
        except json.JSONDecodeError:  # a line being written
            pass
    return max(steps)


def checkpoint_step(run_dir: Path) -> int:
    """The step of the newest checkpoint recorded, 0 before any."""
    state = run_dir / CHECKPOINT_DIR / "checkpoint"
    if not state.exists():
        return 0
    first_line = state.read_text().splitlines()[0]  # model_checkpoint_path: "ckpt-<step>"
    return int(first_line.rsplit("-", 1)[1].strip('"'))


def wait_for_step(process: subprocess.Popen, run_dir: Path, step: int, timeout: float = 300) -> bool:
    """Waits until the run has logged `step`; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while last_logged_step(run_dir) < step:
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def kill_at(run_dir: Path, step: int) -> dict:
    step = max(step, last_logged_step(run_dir) + 10)  # past what the killed processes logged: this process trains there
    process = start(run_dir)
    reached = wait_for_step(process, run_dir, step)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    logged, resumed = last_logged_step(run_dir), checkpoint_step(run_dir)
    return {"fault": f"kill -9 after step {step}", "survived": reached, "steps_lost": logged - resumed}


def sigterm(run_dir: Path) -> dict:
    process = start(run_dir)
    wait_for_step(process, run_dir, last_logged_step(run_dir) + 50)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    logged, saved = last_logged_step(run_dir), checkpoint_step(run_dir)
    return {"fault": "SIGTERM", "survived": process.returncode == EXIT_PREEMPTED, "steps_lost": logged - saved}


def second_process(run_dir: Path) -> dict:
    first = start(run_dir)
    wait_for_step(first, run_dir, last_logged_step(run_dir) + 20)
    second = run(run_dir)
    refused = second.returncode == 1 and f"being trained by process {first.pid}" in second.stdout
    first.send_signal(signal.SIGKILL)
    first.communicate()
    return {"fault": "a second process on the run", "survived": refused, "steps_lost": last_logged_step(run_dir) - checkpoint_step(run_dir)}


def truncated_checkpoint(run_dir: Path) -> dict:
    damaged = checkpoint_step(run_dir)
    (data,) = (run_dir / CHECKPOINT_DIR).glob(f"ckpt-{damaged}.data-*")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    process = start(run_dir)
    survived = wait_for_step(process, run_dir, max(damaged, last_logged_step(run_dir)) + 10)
    process.send_signal(signal.SIGKILL)
    output, _ = process.communicate()
    resumed = re.search(r"resuming from the checkpoint of step (\d+)", output)
    survived = survived and f"ckpt-{damaged} does not load" in output and resumed is not None
    lost = damaged - int(resumed.group(1)) if resumed else damaged
    return {"fault": f"checkpoint of step {damaged} truncated", "survived": survived, "steps_lost": lost}


def full_disk(run_dir: Path) -> dict:
    """Moves the run onto a tmpfs with little room, trains until a write fails, grows the tmpfs, resumes there."""
    mount = Path(tempfile.mkdtemp(prefix="fault_drill_disk_"))
    used_kib = sum(path.stat().st_size for path in run_dir.rglob("*") if path.is_file()) // 1024
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={used_kib + 100}k", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode:
        mount.rmdir()
        return {"fault": "full disk", "survived": None, "steps_lost": 0, "note": "skipped: mounting a tmpfs needs root on Linux"}
    try:
        small = mount / "run"
        shutil.copytree(run_dir, small)
        before = checkpoint_step(small)
        failed = run(small)
        said = "no space left on the device while writing" in failed.stdout and "Traceback" not in failed.stdout
        kept = checkpoint_step(small)
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
        process = start(small)
        resumed = wait_for_step(process, small, kept + 10)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        shutil.rmtree(run_dir)
        shutil.copytree(small, run_dir)
        lost = last_logged_step(small) - checkpoint_step(small)
        return {"fault": f"full disk (after step {before})", "survived": failed.returncode == 1 and said and resumed, "steps_lost": lost}
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
        mount.rmdir()


def comparable(results: dict) -> dict:
    return {key: value for key, value in results.items() if key not in TIMINGS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20, help="kill -9 points")
    parser.add_argument("--seed", type=int, default=0, help="draws the kill steps")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/fault_drill"))
    args = parser.parse_args()
    reference, faulty = args.work_dir / "uninterrupted", args.work_dir / "faulty"
    shutil.rmtree(faulty, ignore_errors=True)
    if not (reference / RESULTS_FILE).exists():
        shutil.rmtree(reference, ignore_errors=True)
        done = run(reference)
        if done.returncode:
            print(done.stdout[-3000:])
            return 1
    # Kill points spread over the run's first half; the other faults follow in its second half.
    steps = sorted(random.Random(args.seed).sample(range(10, STEPS // 2), args.kills))
    faults = [*(lambda step=step: kill_at(faulty, step) for step in steps), lambda: sigterm(faulty), lambda: second_process(faulty)]
    faults += [lambda: truncated_checkpoint(faulty), lambda: full_disk(faulty)]
    failures = 0
    for fault in faults:
        outcome = fault()
        if outcome["survived"] is None:
            verdict = "skipped"
        elif outcome["survived"] and outcome["steps_lost"] <= CHECKPOINT_EVERY:
            verdict = "survived"
        else:
            verdict, failures = "NOT SURVIVED", failures + 1
        print(f"{outcome['fault']:<40} {verdict:<13} steps lost {outcome['steps_lost']:>4}  {outcome.get('note', '')}")
    done = run(faulty)
    same_metrics = computed_metrics(faulty) == computed_metrics(reference)
    results = [json.loads((path / RESULTS_FILE).read_text()) for path in (reference, faulty)] if done.returncode == 0 else None
    same_results = results is not None and comparable(results[0]) == comparable(results[1])
    left = (faulty / LOCK_FILE).exists()
    print(f"finished: {done.returncode == 0}; identical to the uninterrupted run: metrics.jsonl {same_metrics}, results {same_results}")
    print(f"faults not survived: {failures} of {len(faults)}; lock left behind: {left}")
    return int(failures > 0 or not (same_metrics and same_results) or left)


if __name__ == "__main__":
    sys.exit(main())
