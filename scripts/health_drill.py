"""Healthy and deliberately broken runs, and what `dann.health` says of each: the evidence for its thresholds.

    python scripts/health_drill.py --data moons                 # seconds per run
    python scripts/health_drill.py --data mnist_m --figure docs/health_mnist_m.png

Each case is one run (`python -m dann.train +experiment=<data> OVERRIDES`, in
`<runs-dir>/<data>/<case>`; a finished run is not repeated). For each it prints the warnings
raised and, for every rule of `dann.health.advice.RULES`, the highest score the rule held at
`CONSECUTIVE` evaluations in a row, beside the rule's threshold: how far each healthy run
stays below it and each broken run goes above. `--figure` draws every case's health panels
(`dann.figures.HEALTH_PANELS`), one row per case. A run that a `NonFiniteLossError` stops
counts as warned when the error names the expected rule (the error lists the rules that
held at the last evaluation). Exits with status 1 when a healthy run warns or a broken run
misses its warning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dann.grid import GridRun, markdown_table, train_run
from dann.health.advice import CONSECUTIVE, RULES, streak_score
from dann.health.report import health_report
from dann.runs import load_metrics

SHORT = ["trainer.steps=3000", "trainer.eval_every=500"]  # MNIST-M: evaluations every 1/6 of a shorter run
EVALUATE_OFTEN = {"moons": ["trainer.eval_every=200"], "mnist_m": SHORT}
# What too high a learning rate breaks differs: moons' domain classifier dies; MNIST-M's gradients explode, then every unit is dead.
OVERSHOOT = ("source_accuracy_falls", "label_loss_rises", "gradient_explodes_or_vanishes", "domain_classifier_not_learning")
# case: (overrides, the warnings of which it must raise one; (): none)
CASES = {
    "healthy (the experiment as it is)": ([], ()),
    "healthy, evaluated often": (["<often>"], ()),
    "lambda 0 (constant schedule)": (["<often>", "schedule/adaptation=constant", "schedule.adaptation.value=0"], ("no_adaptation",)),
    "source only": (["<often>", "algorithm=source_only"], ("no_adaptation",)),
    "domain loss weight 0": (["<often>", "algorithm.domain_loss_weight=0"], ("domain_classifier_not_learning",)),
    "target entropy weight 5": (["<often>", "algorithm.target_entropy_weight=5"], ("target_predictions_collapse",)),
    "learning rate 1.0": (["<often>", "optimizer.lr=1.0"], OVERSHOOT),
}


def run_case(data: str, name: str, overrides: list[str], runs_dir: Path, extra: list[str]) -> GridRun:
    """Trains the case unless finished: its run, or the error line of a run that stopped."""
    overrides = [o for override in overrides for o in (EVALUATE_OFTEN[data] if override == "<often>" else [override])]
    run_dir = runs_dir / data / name.split(" (")[0].replace(" ", "_").replace(",", "")
    return train_run([f"+experiment={data}", *overrides, *extra], run_dir, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(EVALUATE_OFTEN), default="moons")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/health_drill"))
    parser.add_argument("--figure", type=Path, help="write the cases' health panels here (needs the plot extra)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. data.data_dir=...")
    args = parser.parse_args()

    print_rows, failures, finished = [], [], {}
    for name, (overrides, expected) in CASES.items():
        outcome = run_case(args.data, name, overrides, args.runs_dir, args.overrides)
        if outcome.error is not None:  # a run stopped by an error: its message names what held at the last evaluation
            print_rows.append([name, " or ".join(expected) or "none", f"stopped: {outcome.error}", *["-"] * len(RULES)])
            if not any(rule in outcome.error for rule in expected):
                failures.append(name)
            continue
        _, monitor = health_report(outcome.run_dir)
        finished[name] = outcome.run_dir
        evaluations = monitor.evaluations
        scores = []
        for rule in RULES:
            findings = [rule.finding(now, evaluations[:i], monitor.context) for i, now in enumerate(evaluations)]
            held = streak_score([None if f is None else f.score for f in findings])
            scores.append("-" if held is None else f"{held:.3f}")
        raised = {warning.rule for warning in monitor.warnings}
        warned = ", ".join(f"{warning.rule}@{warning.step}" for warning in monitor.warnings)
        print_rows.append([name, " or ".join(expected) or "none", warned or "none", *scores])
        if raised.isdisjoint(expected) if expected else raised:
            failures.append(name)
    columns = ["case", "expected", "raised (rule@step)", *(f"{rule.name} (warns at >= {rule.threshold:g})" for rule in RULES)]
    print(f"\n{args.data}: each rule's highest score held at {CONSECUTIVE} evaluations in a row\n")
    print(markdown_table(columns, print_rows))
    if args.figure:
        print("\nwrote", draw(finished, args.figure, args.data))
    if failures:
        print("\nnot as expected:", "; ".join(failures))
        sys.exit(1)
    print("\nevery case as expected")


def draw(runs: dict[str, Path], path: Path, title: str) -> Path:
    """One row of health panels per case."""
    from dann.figures import HEALTH_PANELS, plot_curves, plt  # needs the plot extra

    figure, panels = plt.subplots(len(runs), len(HEALTH_PANELS), figsize=(5 * len(HEALTH_PANELS), 3 * len(runs)), squeeze=False)
    for row, (name, run_dir) in zip(panels, runs.items()):
        records = load_metrics(run_dir)
        for axes, (panel, curves) in zip(row, HEALTH_PANELS.items()):
            plot_curves(axes, records, curves)
            axes.set_title(f"{name}: {panel}", fontsize="small")
        row[-1].set_yscale("log")
    figure.suptitle(f"{title}: health of healthy and broken runs (scripts/health_drill.py)")
    figure.tight_layout(rect=(0, 0, 1, 0.98))  # room for the title
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


if __name__ == "__main__":
    main()
