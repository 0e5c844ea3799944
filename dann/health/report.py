"""The health report of a finished or running run: is adaptation working?

Read from the run's `config.yaml` and `metrics.jsonl` (no model, no target label): the
label-free figures at each evaluation and the warnings of `dann.health.advice`, as the
training loop raised them. `python -m dann.health run_dir=PATH` prints it.
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import get_class

from dann.config import algorithm_hyperparameters, build_datasets
from dann.health.advice import HealthMonitor, RunContext, linear_probe_accuracy
from dann.models import COMPONENTS
from dann.runs import load_config, load_metrics

COLUMNS = {  # heading: how to read it from one evaluation's figures
    "step": lambda f: f"{f['step']:d}",
    "lambda": lambda f: f"{f['lambda']:.3f}",
    "source acc": lambda f: f"{f['source_test_accuracy']:.3f}",
    "domain clf acc": lambda f: f"{f['domain_classifier_accuracy']:.3f}",
    "probe acc": lambda f: f"{linear_probe_accuracy(f):.3f}",
    "target class H": lambda f: f"{f['target_class_entropy']:.2f}",
    "largest class": lambda f: f"{f['target_largest_class_share']:.2f}",
    "target pred H": lambda f: f"{f['target_prediction_entropy']:.3f}",
    "|grad| feat/label/dom": lambda f: "/".join(f"{f[f'{component}_gradient_norm']:.2g}" for component in COMPONENTS),
}


def health_report(run_dir: str | Path) -> tuple[str, HealthMonitor]:
    """The report's text and the monitor that read the run (its `warnings`)."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    records = load_metrics(run_dir)
    adaptation_steps = get_class(cfg.algorithm._target_).adaptation_steps(cfg.trainer.steps, **algorithm_hyperparameters(cfg))
    monitor = HealthMonitor(RunContext(build_datasets(cfg).num_classes, cfg.trainer.steps, adaptation_steps))
    for record in records:
        monitor.observe(record)
    rows = [[_cell(read, figures) for read in COLUMNS.values()] for figures in monitor.evaluations]
    widths = [max(len(text) for text in column) for column in zip(COLUMNS, *rows)]
    table = ["  ".join(text.rjust(width) for text, width in zip(row, widths)) for row in [list(COLUMNS), *rows]]
    lines = [f"Health of {run_dir} ({len(rows)} evaluations; {cfg.trainer.steps} steps in all):", *table, ""]
    if monitor.warnings:
        lines += [f"{len(monitor.warnings)} warning(s):", *(f"  {warning}" for warning in monitor.warnings)]
    else:
        lines.append("No warning: no pattern of dann.health.advice held at consecutive evaluations.")
    return "\n".join(lines), monitor


def _cell(read, figures: dict) -> str:
    try:
        return read(figures)
    except KeyError:  # a figure this run did not log (an older run)
        return "-"
