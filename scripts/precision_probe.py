"""What `trainer.precision=auto` chooses on this machine for an experiment's network, and what its probe measures.

    python scripts/precision_probe.py +experiment=mnist_m_paper
    python scripts/precision_probe.py +experiment=mnist_m_genuine trainer.batch_size=128

Prints `auto`'s choice and why (as a run would log it, using a kept verdict if there is one),
then runs the probe itself, whatever the CPU's flags, and prints the bfloat16 speedup it
measured and what measuring cost: the figures `auto` would see on a CPU where it probes.
"""

from __future__ import annotations

import sys
import time

from dann.config import USER_ERRORS, build_datasets, build_model, choose_run_precision, compose_config, probe_batch
from dann.devices import device_name
from dann.precision import MIN_BFLOAT16_SPEEDUP, probe_bfloat16_speedup


def main() -> None:
    overrides = sys.argv[1:] or ["+experiment=mnist_m_paper"]
    try:
        cfg = compose_config(overrides)
        datasets = build_datasets(cfg)
    except USER_ERRORS as error:
        sys.exit(f"{type(error).__name__}: {error}")
    print(f"device: {device_name()}; config: {' '.join(overrides)}")
    choice = choose_run_precision(cfg, datasets)
    print(f"auto chooses {choice.policy}: {choice.reason}")
    start = time.perf_counter()
    speedup = probe_bfloat16_speedup(
        lambda policy: build_model(cfg, datasets, policy), datasets.input_shape, probe_batch(cfg), cfg.trainer.jit_compile
    )
    seconds = time.perf_counter() - start
    print(f"probe: bfloat16 {speedup:.2f}x as fast as float32 (bfloat16 needs {MIN_BFLOAT16_SPEEDUP}x), measured in {seconds:.1f} s")


if __name__ == "__main__":
    main()
