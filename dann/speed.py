"""How fast the training step runs, and how close to the hardware: the measurements of `python -m dann.benchmark`.

`benchmark(overrides)` measures, on one process and device (warm-up excluded, median and spread of repeats):
  precision               the precision the run trains in (trainer.precision; `auto` chosen as
                          dann.precision says, with why in precision_choice)
  compiled_images_per_s   the compiled step on batches already in memory, in that precision
  compiled_images_per_s_by_precision  the same step in float32 and in mixed_bfloat16
  compiled_bfloat16_over_float32  mixed_bfloat16 / float32, the median of the rounds' ratios
  pipeline_images_per_s   the whole path: TFDS -> tf.data -> compiled step, as `fit` runs it
  naive_compiled_images_per_s  the step as a user would write it: one `tf.function` per update,
                          Keras' losses and defaults, float32 included (`naive_compiled_step`)
  compiled_over_naive     compiled / naive compiled, the median of the rounds' ratios
  eager_images_per_s      a plain eager GradientTape step
  input_wait_fraction     the share of the pipeline run spent waiting for input
  flops_per_image         counted from the layers: forward and backward, per training image
  achieved_flops_per_s    flops_per_image * compiled_images_per_s
  matmul_ceiling_flops_per_s  a large float32 matrix multiply on the same device, the practical ceiling
  matmul_ceiling_bf16_flops_per_s  the same in bfloat16, the ceiling of trainer.precision=mixed_bfloat16
  fraction_of_ceiling     achieved / the ceiling of the precision the step ran in (`precision`)
Images are counted source + target: one step of batch 64 processes 128 images. Each of
`--repeats` rounds runs every measurement once, in turn, so a drift in the machine's speed
touches them all alike.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from dann.algorithms import Algorithm
from dann.config import build_algorithm, build_datasets, build_model, choose_run_precision, compose_config, trainer_settings
from dann.data import DomainDatasets, training_batches
from dann.devices import device_name
from dann.layers import GradientReversal
from dann.loop import TrainerSettings
from dann.models import AdaptationModel
from dann.precision import time_interleaved

DEFAULT_EXPERIMENT = "+experiment=mnist_m_paper"
# The step is also timed in these, beside the run's precision, to show what `auto` chose between.
COMPARED_PRECISIONS = ("float32", "mixed_bfloat16")


def layer_flops(network: keras.Sequential, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs (multiply and add counted apart) of one example through `network`'s conv and dense layers."""
    flops, shape = 0, (1, *input_shape)
    for layer in network.layers:
        output_shape = layer.compute_output_shape(shape)
        if isinstance(layer, keras.layers.Conv2D):
            kernel_h, kernel_w = layer.kernel_size
            flops += 2 * int(np.prod(output_shape[1:])) * kernel_h * kernel_w * shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * shape[-1] * layer.units
        shape = output_shape
    return flops


def training_flops_per_image(model: AdaptationModel, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one training image: the forward pass through all three networks, times 3 for the backward.

    The backward pass costs two forward passes (gradients of the inputs and of the
    weights), the usual estimate.
    """
    feature_shape = model.feature_extractor.compute_output_shape((1, *input_shape))[1:]
    domain_shape = feature_shape
    if model.domain_conditioning is not None:  # CDAN's map: its own cost is small beside the classifier's
        classes_shape = model.label_classifier.compute_output_shape((1, *feature_shape))
        domain_shape = model.domain_conditioning.compute_output_shape([(1, *feature_shape), classes_shape])[1:]
    forward = (
        layer_flops(model.feature_extractor, input_shape)
        + layer_flops(model.label_classifier, feature_shape)
        + layer_flops(model.domain_classifier, domain_shape)
    )
    return 3 * forward


def naive_compiled_step(model: AdaptationModel) -> Callable[..., tf.Tensor]:
    """DANN's update as a user writes it from the paper: one compiled update per call, Keras' losses, its own SGD.

    The baseline `dann`'s step is compared with: the same networks (built in Keras' default
    float32 by `benchmark`) and batch, no fused updates, no per-domain bookkeeping, nothing tuned.
    """
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    label_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    domain_loss = keras.losses.BinaryCrossentropy(from_logits=True)
    reversal = GradientReversal()

    @tf.function
    def step(source_x: tf.Tensor, source_y: tf.Tensor, target_x: tf.Tensor, lambda_: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            features = model.feature_extractor(tf.concat([source_x, target_x], axis=0), training=True)
            logits = model.label_classifier(features[: tf.shape(source_x)[0]], training=True)
            domain_logits = model.domain_classifier(reversal(features, lambda_), training=True)
            domains = tf.concat(
                [tf.zeros_like(domain_logits[: tf.shape(source_x)[0]]), tf.ones_like(domain_logits[tf.shape(source_x)[0] :])], 0
            )
            loss = label_loss(source_y, logits) + domain_loss(domains, domain_logits)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return step


def matmul_ceiling(size: int = 2048, repeats: int = 5, dtype: tf.DType = tf.float32) -> float:
    """FLOP/s of a `size` x `size` matrix multiply in `dtype`, compiled, median of `repeats`."""
    a = tf.random.normal((size, size), dtype=dtype)
    b = tf.random.normal((size, size), dtype=dtype)
    chain = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(tf.matmul(a, b), b)))
    chain(a, b).numpy()
    seconds = time_interleaved({"matmul": lambda: chain(a, b).numpy()}, repeats)["matmul"]
    return 2 * 2 * size**3 / statistics.median(seconds)


def benchmark(overrides: list[str], steps: int = 100, repeats: int = 5) -> dict:
    """Runs the measurements for the config `overrides` compose; returns the figures."""
    cfg = compose_config(overrides)
    settings = trainer_settings(cfg)
    keras.utils.set_random_seed(cfg.seed)
    datasets = build_datasets(cfg)
    choice = choose_run_precision(cfg, datasets)
    # dann's step in the run's precision, and in both float32 and bfloat16 beside it; the naive
    # step on its own copy of the networks in Keras' default policy, float32.
    policies = dict.fromkeys((*COMPARED_PRECISIONS, choice.policy))
    algorithms = {policy: build_algorithm(cfg, build_model(cfg, datasets, policy)) for policy in policies}
    naive_model = build_model(cfg, datasets, "float32")
    runs, waits, images = _measurement_runs(algorithms, choice.policy, naive_model, datasets, settings, steps)
    for run in runs.values():  # warm-up: tracing and the first pipeline epoch's start
        run()
    waits.clear()
    seconds = time_interleaved(runs, repeats)
    rates = {name: [images[name] / s for s in run_seconds] for name, run_seconds in seconds.items()}
    compiled = rates[choice.policy]
    # Ratios per round: the two steps ran seconds apart, so a drift in the machine's speed
    # (other tenants, clock) cancels out of each ratio instead of landing on one side.
    over_naive = [c / n for c, n in zip(compiled, rates["naive"])] if "naive" in rates else None
    bfloat16_speedup = [b / f for b, f in zip(rates["mixed_bfloat16"], rates["float32"])]
    flops = training_flops_per_image(algorithms[choice.policy].model, datasets.input_shape)
    ceiling = {"float32": matmul_ceiling(repeats=repeats), "mixed_bfloat16": matmul_ceiling(repeats=repeats, dtype=tf.bfloat16)}
    return {
        "config": overrides,
        "precision": choice.policy,
        "precision_choice": choice.as_dict(),
        "batch_size": settings.batch_size,
        "steps_per_call": settings.steps_per_call,
        "jit_compile": bool(cfg.trainer.jit_compile),
        "repeats": repeats,
        **_median_and_spread("compiled_images_per_s", compiled),
        "compiled_images_per_s_by_precision": {policy: statistics.median(rates[policy]) for policy in algorithms},
        **_median_and_spread("compiled_bfloat16_over_float32", bfloat16_speedup),
        **_median_and_spread("pipeline_images_per_s", rates["pipeline"]),
        **_median_and_spread("naive_compiled_images_per_s", rates.get("naive")),
        "naive_compiled_precision": naive_model.dtype_policy.name,
        **_median_and_spread("compiled_over_naive", over_naive),
        **_median_and_spread("eager_images_per_s", rates["eager"]),
        "input_wait_fraction": statistics.median(w / s for w, s in zip(waits, seconds["pipeline"])),
        "flops_per_image": flops,
        "achieved_flops_per_s": flops * statistics.median(compiled),
        "matmul_ceiling_flops_per_s": ceiling["float32"],
        "matmul_ceiling_bf16_flops_per_s": ceiling["mixed_bfloat16"],
        "fraction_of_ceiling": flops * statistics.median(compiled) / ceiling.get(choice.policy, ceiling["float32"]),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"),
        "device": device_name(),
        "tensorflow": tf.__version__,
    }


def _measurement_runs(
    algorithms: dict[str, Algorithm],
    policy: str,
    naive_model: AdaptationModel,
    datasets: DomainDatasets,
    settings: TrainerSettings,
    steps: int,
) -> tuple[dict[str, Callable[[], None]], list[float], dict[str, int]]:
    """The measurements, each a callable run once per round: the compiled step in each of `algorithms`' precisions,
    the pipeline and the eager step in `policy`, and the naive step; the list the pipeline run appends its seconds
    of waiting for input to; and the images each run processes."""
    algorithm = algorithms[policy]
    k = settings.steps_per_call
    calls_per_repeat = max(steps // k, 1)
    eager_steps = max(steps // 10, 1)  # eager is slow: fewer steps, same per-image rate
    calls = iter(training_batches(datasets, settings.batch_size, settings.seed).batch(k))
    (sx, sy), tx = next(calls)  # kept in memory for the compiled and eager runs
    step0 = tf.constant(0, tf.int64)
    waits: list[float] = []

    def compiled_run(algorithm):
        def run():
            for _ in range(calls_per_repeat):
                metrics = algorithm.update_steps(sx, sy, tx, step0)
            float(metrics["loss"])

        return run

    def pipeline_run():
        waited = 0.0
        for _ in range(calls_per_repeat):
            before = time.perf_counter()
            (source_x, source_y), target_x = next(calls)
            waited += time.perf_counter() - before
            metrics = algorithm.update_steps(source_x, source_y, target_x, step0)
        float(metrics["loss"])
        waits.append(waited)

    naive_step, lambda_ = naive_compiled_step(naive_model), tf.constant(1.0)

    def naive_compiled_run():
        for _ in range(calls_per_repeat * k):
            loss = naive_step(sx[0], sy[0], tx[0], lambda_)
        float(loss)

    def eager_run():
        for _ in range(eager_steps):
            _, gradients_and_variables = algorithm.compute_gradients(sx[0], sy[0], tx[0], step0)
            algorithm.optimizer.apply_gradients(gradients_and_variables)

    runs = {name: compiled_run(each) for name, each in algorithms.items()}
    runs.update(pipeline=pipeline_run, eager=eager_run)
    if algorithm.model.domain_conditioning is None:  # the naive step is DANN's: its domain classifier reads the features
        runs["naive"] = naive_compiled_run
    images = {name: calls_per_repeat * k * 2 * settings.batch_size for name in runs}
    images["eager"] = eager_steps * 2 * settings.batch_size
    return runs, waits, images


def _median_and_spread(name: str, values: list[float] | None) -> dict:
    """`{name: median, name_spread: [min, max]}` of the rounds' `values`; `None` for both where not measured."""
    return {name: values and statistics.median(values), f"{name}_spread": values and [min(values), max(values)]}


def with_default_experiment(overrides: list[str]) -> list[str]:
    """`overrides` applied to `DEFAULT_EXPERIMENT`, unless they choose an experiment themselves."""
    if any(override.startswith("+experiment=") for override in overrides):
        return overrides
    return [DEFAULT_EXPERIMENT, *overrides]
