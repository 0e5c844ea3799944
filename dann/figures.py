"""A run's figures, as PNG files (`python -m dann.plot` draws them for a finished run).

Writes into the run directory:
  learning_curves.png  label and domain loss, and source and target test accuracy, over steps
  health.png           the label-free health figures over steps (`dann.health`): how well the
                       domains separate, how target predictions spread, each component's gradient norm
  embedding.png        t-SNE of source and target test features, before and after adaptation,
                       coloured by domain and marked by class (Ganin et al., 2016, figure 5);
                       "before" is the network at initialisation (same seed), or the model of
                       the run given as `before` (e.g. a source-only run)

Needs the `plot` extra: `pip install 'dann[plot]'` (matplotlib, scikit-learn).
"""

from __future__ import annotations

from pathlib import Path

import keras
import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from dann.config import build_datasets, build_model  # noqa: E402
from dann.data import DomainDatasets  # noqa: E402
from dann.data.domains import test_samples  # noqa: E402
from dann.health.advice import linear_probe_accuracy  # noqa: E402
from dann.models import COMPONENTS, AdaptationModel  # noqa: E402
from dann.runs import EMBEDDING_FILE, HEALTH_FILE, LEARNING_CURVES_FILE, load_config, load_metrics, load_model  # noqa: E402

DOMAIN_COLOURS = {"source": "tab:blue", "target": "tab:red"}
CURVE_LABELS = {
    "label_loss": "label loss (source batches)",
    "domain_loss": "domain loss (both batches)",
    "label_accuracy": "source batch accuracy",
    "source_test_accuracy": "source test accuracy",
    "target_test_accuracy": "target test accuracy",
}


def plot_run(
    run_dir: str | Path, before: str | Path | None = None, max_examples: int = 500, datasets: DomainDatasets | None = None
) -> list[Path]:
    """Writes the learning curves and the embedding of the finished run `run_dir`; returns their paths.

    Args:
        run_dir: a finished `python -m dann.train` run directory.
        before: a run directory whose model is "before adaptation"; default: the
            network at initialisation.
        max_examples: test examples per domain in the embedding.
        datasets: the run's datasets, if already loaded (else built from its config).
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    if datasets is None:
        datasets = build_datasets(cfg)
    after_model = load_model(run_dir)
    if before is None:
        keras.utils.set_random_seed(cfg.seed)  # as `dann.train` did before building the model
        before_model = build_model(cfg, datasets, after_model.dtype_policy.name)
        before_title = "before adaptation (initial network)"
    else:
        before_model, before_title = load_model(before), f"before adaptation ({Path(before).name})"
    paths = [plot_learning_curves(run_dir), plot_health(run_dir), run_dir / EMBEDDING_FILE]
    plot_embeddings({before_title: before_model, "after adaptation": after_model}, datasets, paths[-1], max_examples, cfg.seed)
    return paths


def plot_learning_curves(run_dir: Path) -> Path:
    """`learning_curves.png` from the run's `metrics.jsonl`: losses (left) and test accuracies (right) over steps."""
    records = load_metrics(run_dir)
    figure, (losses, accuracies) = plt.subplots(1, 2, figsize=(11, 4))
    for axes, keys in ((losses, list(CURVE_LABELS)[:2]), (accuracies, list(CURVE_LABELS)[2:])):
        plot_curves(axes, records, {key: (lambda record, key=key: record[key], CURVE_LABELS[key]) for key in keys})
    losses.set_ylabel("loss (nats)")
    accuracies.set_ylabel("accuracy")
    return _save(figure, run_dir, LEARNING_CURVES_FILE)


HEALTH_PANELS = {  # panel title: {curve: (how to read it from a record, label)}
    "domains (held-out features)": {
        "domain_classifier_accuracy": (lambda r: r["domain_classifier_accuracy"], "domain classifier accuracy"),
        "probe": (linear_probe_accuracy, "linear probe accuracy (from the proxy A-distance)"),
        "lambda": (lambda r: r["lambda"], "lambda"),
    },
    "target predictions (unlabelled)": {
        "target_largest_class_share": (lambda r: r["target_largest_class_share"], "largest predicted class's share"),
        "target_prediction_entropy": (lambda r: r["target_prediction_entropy"], "mean prediction entropy (nats)"),
        "source_test_accuracy": (lambda r: r["source_test_accuracy"], "source test accuracy"),
    },
    "gradient norm of the total loss": {
        f"{component}_gradient_norm": (lambda r, key=f"{component}_gradient_norm": r[key], component.replace("_", " "))
        for component in COMPONENTS
    },
}


def plot_health(run_dir: Path) -> Path:
    """`health.png` from the run's `metrics.jsonl`: the figures `python -m dann.health` reads, one panel per question."""
    records = load_metrics(run_dir)
    figure, panels = plt.subplots(1, len(HEALTH_PANELS), figsize=(5.5 * len(HEALTH_PANELS), 4))
    for axes, (title, curves) in zip(panels, HEALTH_PANELS.items()):
        plot_curves(axes, records, curves)
        axes.set_title(title)
    panels[-1].set_yscale("log")
    return _save(figure, run_dir, HEALTH_FILE)


def plot_curves(axes, records: list[dict], curves: dict) -> None:
    """Draws each curve `{name: (read, label)}` over the records that hold it."""
    for read, label in curves.values():
        points = []
        for record in records:
            try:
                points.append((record["step"], read(record)))
            except KeyError:  # not in this record (training or evaluation), or not logged by this run
                continue
        if points:
            axes.plot(*zip(*points), marker="." if len(points) < 30 else None, label=label)
    axes.set_xlabel("step")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)


def _save(figure, run_dir: Path, name: str) -> Path:
    figure.suptitle(run_dir.name)
    figure.tight_layout()
    path = run_dir / name
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_embeddings(models: dict[str, AdaptationModel], datasets: DomainDatasets, path: Path, max_examples: int, seed: int = 0) -> None:
    """One t-SNE panel per model of its source and target test features."""
    samples = test_samples(datasets, max_examples)
    figure, panels = plt.subplots(1, len(models), figsize=(6 * len(models), 6), squeeze=False)
    for axes, (title, model) in zip(panels[0], models.items()):
        features = np.concatenate([model.feature_extractor(samples[d][0], training=False).numpy() for d in DOMAIN_COLOURS])
        points = TSNE(perplexity=min(30.0, (len(features) - 1) / 3), init="pca", random_state=seed).fit_transform(features)
        start = 0
        for domain, colour in DOMAIN_COLOURS.items():
            labels = samples[domain][1].numpy()
            domain_points, start = points[start : start + len(labels)], start + len(labels)
            for label in np.unique(labels):
                marker = f"${label}$" if datasets.num_classes <= 10 else "o"
                axes.scatter(*domain_points[labels == label].T, c=colour, marker=marker, s=30, alpha=0.6, linewidths=0)
            axes.scatter([], [], c=colour, label=domain)
        axes.set_title(title)
        axes.set_xticks([])
        axes.set_yticks([])
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
