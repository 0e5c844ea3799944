"""`python -m dann.benchmark`: how fast the training step runs, and how close to the hardware.

    python -m dann.benchmark --out benchmark.json                       # the paper's model, batch 64 + 64
    python -m dann.benchmark trainer.steps_per_call=10 trainer.jit_compile=true

Prints the figures of `dann.speed.benchmark`:
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import tensorflow as tf

import dann.speed
from dann.config import exit_on_user_error
from dann.speed import DEFAULT_EXPERIMENT, benchmark, with_default_experiment


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__ + dann.speed.__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help=f"Hydra overrides, applied to {DEFAULT_EXPERIMENT} unless they name an experiment")
    parser.add_argument("--steps", type=int, default=100, help="training steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--intra-op-threads", type=int, default=0, help="threads within an op; 0: TensorFlow's choice")
    parser.add_argument("--inter-op-threads", type=int, default=0, help="ops run at once; 0: TensorFlow's choice")
    args = parser.parse_intermixed_args()  # overrides may come before or after the options
    if args.intra_op_threads:  # 0 leaves TensorFlow's choice (and TF_NUM_INTRAOP_THREADS) alone
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    if args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    overrides = with_default_experiment(args.overrides)
    with exit_on_user_error():
        figures = benchmark(overrides, args.steps, args.repeats)
    print(f"device: {figures['device']}, TensorFlow {figures['tensorflow']}, ONEDNN_MAX_CPU_ISA={figures['onednn_max_cpu_isa']}")
    print(
        f"config: {' '.join(overrides)}; batch {figures['batch_size']} + {figures['batch_size']}, "
        f"{figures['steps_per_call']} step(s) per call, jit_compile={figures['jit_compile']}; threads intra "
        f"{figures['intra_op_threads']} inter {figures['inter_op_threads']} (0: default), "
        f"TF_ENABLE_ONEDNN_OPTS={figures['onednn']}"
    )
    choice = figures["precision_choice"]
    print(f"precision: {figures['precision']} (trainer.precision={choice['requested']}: {choice['reason']})")
    for policy, rate in figures["compiled_images_per_s_by_precision"].items():
        print(f"{'compiled, ' + policy:<28} {rate:>12,.0f}")
    low, high = figures["compiled_bfloat16_over_float32_spread"]
    ratio = figures["compiled_bfloat16_over_float32"]
    print(f"{'compiled bfloat16 / float32':<28} {ratio:>12.2f}x   (min {low:.2f}, max {high:.2f}, per round)")
    for key in ("compiled_images_per_s", "pipeline_images_per_s", "naive_compiled_images_per_s", "eager_images_per_s"):
        if figures[key] is None:
            print(f"{key:<28} {'not measured (a conditioned domain classifier)':>12}")
            continue
        low, high = figures[f"{key}_spread"]
        print(f"{key:<28} {figures[key]:>12,.0f}   (min {low:,.0f}, max {high:,.0f}, {args.repeats} repeats)")
    print(f"{'input_wait_fraction':<28} {figures['input_wait_fraction']:>12.3f}")
    print(f"{'flops_per_image':<28} {figures['flops_per_image']:>12,.0f}")
    print(f"{'achieved_flops_per_s':<28} {figures['achieved_flops_per_s'] / 1e9:>12.1f} GFLOP/s")
    print(f"{'matmul_ceiling_flops_per_s':<28} {figures['matmul_ceiling_flops_per_s'] / 1e9:>12.1f} GFLOP/s")
    print(f"{'matmul_ceiling_bf16_flops_per_s':<28} {figures['matmul_ceiling_bf16_flops_per_s'] / 1e9:>12.1f} GFLOP/s")
    print(f"{'fraction_of_ceiling':<28} {figures['fraction_of_ceiling']:>12.1%}   (of the {figures['precision']} ceiling)")
    if figures["compiled_over_naive"]:
        low, high = figures["compiled_over_naive_spread"]
        print(
            f"{'compiled / naive compiled':<28} {figures['compiled_over_naive']:>12.2f}x   (min {low:.2f}, max {high:.2f}, per round; "
            f"{figures['precision']} against {figures['naive_compiled_precision']})"
        )
    print(f"{'compiled / eager':<28} {figures['compiled_images_per_s'] / figures['eager_images_per_s']:>12.1f}x")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
