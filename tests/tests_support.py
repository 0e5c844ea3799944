"""Constants and helpers shared by the tests."""

import importlib.util
from pathlib import Path

import numpy as np

# A run of a few steps; no figures (a test of them asks for them with trainer.plots=true).
TINY_OVERRIDES = ["trainer.steps=20", "trainer.log_every=10", "trainer.eval_every=20", "trainer.batch_size=16", "trainer.plots=false"]
# Tiny moons, checkpointed every 10 steps, deterministic: the shared `tiny_run` (conftest.py).
TINY_RUN = ["+experiment=moons", "data.num_train=64", "data.num_test=64", *TINY_OVERRIDES, "trainer.checkpoint_every=10",
            "trainer.deterministic=true"]  # fmt: skip

# Examples per split of the small mnist_m/synthetic the tests build.
SMALL_SPLIT = 200


def write_original_mnist_m(root, split, count, label_lines=None):
    """Writes `count` random 32x32 PNGs and their labels as the original MNIST-M lays them out under `root`."""
    import tensorflow as tf  # here: conftest.py imports this module in pytest-xdist's controller too

    folder = root / "mnist_m" / f"mnist_m_{split}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(split))
    lines = []
    for index in range(count):
        name = f"{index:08d}.png"
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        (folder / name).write_bytes(tf.io.encode_png(pixels).numpy())
        lines.append(f"{name} {index % 10}")
    (root / "mnist_m" / f"mnist_m_{split}_labels.txt").write_text("\n".join(label_lines or lines) + "\n")
    return folder


def write_domain(root, classes=("cat", "dog"), per_class=10, size=(20, 24), brightness=0, split_folders=False):
    """Writes `per_class` PNGs per class under `root/<class>/` (or `root/train|test/<class>/`); class `i` is `40 * i` brighter."""
    import tensorflow as tf  # here: conftest.py imports this module in pytest-xdist's controller too

    rng = np.random.default_rng(len(str(root)))
    parts = [root / "train", root / "test"] if split_folders else [root]
    for part in parts:
        for index, name in enumerate(classes):
            folder = part / name
            folder.mkdir(parents=True, exist_ok=True)
            for image in range(per_class):
                pixels = np.clip(rng.integers(0, 60, (*size, 3)) + 40 * index + brightness, 0, 255).astype(np.uint8)
                (folder / f"{image:03d}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    return root


def load_script(name: str):
    """The module `scripts/<name>.py`, imported (its `main` reads `sys.argv`)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
