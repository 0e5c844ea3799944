"""Warnings with advice: patterns in a run's label-free figures that mean adaptation is not working.

`HealthMonitor` reads the records a run writes to `metrics.jsonl`, in order. At each
evaluation it checks every rule of `RULES` on that evaluation's figures (the label-free
ones of `dann.loop`, with the latest training record's lambda, losses and gradient norms);
a rule that holds at `CONSECUTIVE` evaluations in a row warns once, saying what it saw and
which config keys to try. No rule reads a target label.

The thresholds were measured on healthy and deliberately broken runs of moons and MNIST-M
(`scripts/health_drill.py`; docs/health.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

Figures = dict[str, float]

CONSECUTIVE = 2  # evaluations in a row a pattern must hold at before it warns
LATE = 0.5  # training progress from which the features should be aligned
DOMAIN_CLASSIFIER_WINS = 0.9  # held-out accuracy: a domain classifier this good has a small gradient because it wins


@dataclass(frozen=True)
class RunContext:
    """What the rules need to know about the run besides its figures.

    Attributes:
        num_classes: classes of the label space.
        total_steps: the run's length, for training progress `step / total_steps`.
        adaptation_steps: how many steps, from the first, train a domain classifier through a
            gradient reversal (`Algorithm.adaptation_steps`): 0 for the bounds, fewer than
            `total_steps` for DIRT-T, whose refinement trains none.
    """

    num_classes: int
    total_steps: int
    adaptation_steps: int

    @property
    def adapts(self) -> bool:
        """The algorithm adapts through a gradient reversal at all."""
        return self.adaptation_steps > 0


@dataclass(frozen=True)
class HealthWarning:
    """A rule that held at consecutive evaluations: which, from which step, what was seen and what to try."""

    rule: str
    step: int
    seen: str
    advice: str

    def __str__(self) -> str:
        return f"{self.rule} (step {self.step}): {self.seen}. Try: {self.advice}"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Finding:
    """A rule's reading of one evaluation: a score (the pattern holds when it reaches the rule's threshold) and its words."""

    score: float
    words: str


@dataclass(frozen=True)
class Rule:
    """A pattern: `read(now, earlier, context)` scores this evaluation's figures (`None`: does not apply).

    `needs`: the figures it reads; a run that did not log them (an older run) is not checked.
    """

    name: str
    read: Callable[[Figures, list[Figures], RunContext], Finding | None]
    threshold: float
    needs: tuple[str, ...]
    advice: str

    def finding(self, now: Figures, earlier: list[Figures], context: RunContext) -> Finding | None:
        return self.read(now, earlier, context) if all(key in now for key in self.needs) else None

    def holds(self, now: Figures, earlier: list[Figures], context: RunContext) -> Finding | None:
        finding = self.finding(now, earlier, context)
        return finding if finding is not None and finding.score >= self.threshold else None


def linear_probe_accuracy(figures: Figures) -> float:
    """The held-out accuracy of the linear domain classifier behind `proxy_a_distance_features` (`2 (1 - 2 err)`)."""
    return 0.5 + figures["proxy_a_distance_features"] / 4


def _domain_classifier_gradient_vanished(now: Figures, earlier: list[Figures], context: RunContext) -> Finding | None:
    """Score: how many orders of magnitude the domain classifier's gradient is below the label classifier's,
    while the algorithm trains it, unless it wins (then its gradient is small because its loss is)."""
    accuracy = now["domain_classifier_accuracy"]
    domain, label = now["domain_classifier_gradient_norm"], now["label_classifier_gradient_norm"]
    trained = now["step"] <= context.adaptation_steps
    if not trained or accuracy >= DOMAIN_CLASSIFIER_WINS or not 0 < label < math.inf:  # the latter: another rule's
        return None
    return Finding(
        math.inf if domain == 0 else math.log10(label / domain),
        f"the domain classifier's gradient ({domain:.2g}) is {'zero' if domain == 0 else 'vanishing'} beside the label "
        f"classifier's ({label:.2g}), and it tells held-out source from target with accuracy {accuracy:.2f}: it is not learning",
    )


def _classifier_gradient_out_of_range(now: Figures, earlier: list[Figures], context: RunContext) -> Finding | None:
    """Score: how many orders of magnitude the feature extractor's or label classifier's gradient norm is from 1."""

    def orders_from_one(norm: float) -> float:
        return abs(math.log10(norm)) if 0 < norm < math.inf else math.inf  # zero, infinite or NaN: out of any range

    norms = {name: now[f"{name}_gradient_norm"] for name in ("feature_extractor", "label_classifier")}
    name, norm = max(norms.items(), key=lambda item: orders_from_one(item[1]))
    return Finding(
        orders_from_one(norm),
        f"the {name.replace('_', ' ')}'s gradient norm is {norm:.2g}: "
        + ("vanishing (dead or saturated units)" if norm <= 1 else "exploding"),
    )


def _no_reversal_late(now: Figures, earlier: list[Figures], context: RunContext) -> Finding | None:
    """Score: 1 when, from `LATE` into training on, lambda is 0 or the algorithm has no reversal; else 0."""
    progress = now["step"] / context.total_steps
    if progress < LATE:
        return None
    idle = not context.adapts or now["lambda"] <= 0
    why = "this algorithm does not adapt" if not context.adapts else "lambda is 0"
    return Finding(float(idle), f"{progress:.0%} into training {why}: nothing aligns the domains")


def _domains_separate_late(now: Figures, earlier: list[Figures], context: RunContext) -> Finding | None:
    """Score: how well the domains are told apart on held-out features (the better of the domain classifier and a
    fresh linear probe), from `LATE` into training on."""
    progress = now["step"] / context.total_steps
    if progress < LATE:
        return None
    probe, accuracy = linear_probe_accuracy(now), now["domain_classifier_accuracy"]
    return Finding(
        max(probe, accuracy),
        f"{progress:.0%} into training the features still separate the domains: the domain "
        f"classifier tells them apart with accuracy {accuracy:.2f}, a fresh linear probe with {probe:.2f} "
        f"(lambda {now.get('lambda', math.nan):.3g})",
    )


def _excess_largest_class_share(now: Figures, earlier: list[Figures], context: RunContext) -> Finding | None:
    """Score: the largest predicted class's share of the target, 0 when balanced, 1 when every prediction is one class."""
    chance = 1.0 / context.num_classes
    share = now["target_largest_class_share"]
    return Finding(
        (share - chance) / (1.0 - chance),
        f"{share:.0%} of the target predictions are one class (entropy of the predicted classes "
        f"{now['target_class_entropy']:.2f} nats; {math.log(context.num_classes):.2f} when balanced)",
    )


def _source_accuracy_drop(now: Figures, earlier: list[Figures], context: RunContext) -> Finding | None:
    """Score: the source test accuracy's fall below the best of the run so far; 1 at chance level."""
    best = max(figures["source_test_accuracy"] for figures in [*earlier, now])
    accuracy, chance = now["source_test_accuracy"], 1.0 / context.num_classes
    if accuracy <= 1.5 * chance:
        return Finding(1.0, f"source test accuracy is {accuracy:.3f}, chance level ({chance:.2f}): the classifier does not learn")
    return Finding(best - accuracy, f"source test accuracy fell to {accuracy:.3f} from {best:.3f}")


def _label_loss_rise(now: Figures, earlier: list[Figures], context: RunContext) -> Finding | None:
    """Score: the training label loss over its lowest value at earlier evaluations, in nats."""
    losses = [figures["label_loss"] for figures in earlier if "label_loss" in figures]
    if not losses:
        return None
    lowest = min(losses)
    return Finding(
        now["label_loss"] - lowest, f"the training label loss rose to {now['label_loss']:.3g} nats from {lowest:.3g}: the updates overshoot"
    )


RULES: tuple[Rule, ...] = (
    Rule(
        "domain_classifier_not_learning",
        _domain_classifier_gradient_vanished,
        threshold=3.0,
        needs=("domain_classifier_accuracy", "domain_classifier_gradient_norm", "label_classifier_gradient_norm"),
        advice="algorithm.domain_loss_weight > 0; a lower optimizer.lr (dead or saturated units); "
        "`python -m dann.diagnose` shows whether the domain classifier's gradient arrives",
    ),
    Rule(
        "no_adaptation",
        _no_reversal_late,
        threshold=1.0,
        needs=("lambda",),
        advice="algorithm=dann (or another adaptation algorithm); schedule/adaptation=sigmoid, or a value > 0 "
        "(schedule.adaptation.value, schedule.adaptation.scale)",
    ),
    Rule(
        "domains_not_aligned",
        _domains_separate_late,
        threshold=0.9,
        needs=("domain_classifier_accuracy", "proxy_a_distance_features"),
        advice="a larger lambda (schedule/adaptation: its value or scale; algorithm.domain_loss_weight); a larger domain "
        "classifier (model.domain_classifier.hidden_units); `python -m dann.diagnose` shows whether the reversed "
        "gradient reaches the features",
    ),
    Rule(
        "target_predictions_collapse",
        _excess_largest_class_share,
        threshold=0.4,
        needs=("target_largest_class_share", "target_class_entropy"),
        advice="a lower algorithm.target_entropy_weight; algorithm.class_balance_weight=1; a higher "
        "algorithm.pseudo_label_threshold; expected only if the target's classes really are this imbalanced",
    ),
    Rule(
        "source_accuracy_falls",
        _source_accuracy_drop,
        threshold=0.05,
        needs=("source_test_accuracy",),
        advice="a lower optimizer.lr; a smaller lambda (schedule/adaptation, algorithm.domain_loss_weight)",
    ),
    Rule(
        "gradient_explodes_or_vanishes",
        _classifier_gradient_out_of_range,
        threshold=3.0,
        needs=("feature_extractor_gradient_norm", "label_classifier_gradient_norm"),
        advice="a lower optimizer.lr (an explosion leaves dead units behind); schedule/learning_rate=annealed; "
        "model.feature_extractor.batch_norm=true",
    ),
    Rule(
        "label_loss_rises",
        _label_loss_rise,
        threshold=0.1,
        needs=("label_loss",),
        advice="a lower optimizer.lr, or a decaying one (schedule/learning_rate=annealed)",
    ),
)


def streak_score(scores: list[float | None], consecutive: int = CONSECUTIVE) -> float | None:
    """The highest score a rule held at `consecutive` evaluations in a row (the lowest of each run of that length)."""
    windows = [scores[i : i + consecutive] for i in range(len(scores) - consecutive + 1)]
    held = [min(window) for window in windows if None not in window]
    return max(held) if held else None


@dataclass
class HealthMonitor:
    """Reads a run's records in order and warns once per rule that holds at `consecutive` evaluations in a row.

    Feed it every record the run writes (`observe`): training records (they carry `lambda`,
    the losses and the gradient norms) and evaluation records (they carry
    `source_test_accuracy` and the label-free health figures; rules are checked on these).
    """

    context: RunContext
    rules: tuple[Rule, ...] = RULES
    consecutive: int = CONSECUTIVE
    warnings: list[HealthWarning] = field(default_factory=list)
    evaluations: list[Figures] = field(default_factory=list)
    _training: Figures = field(default_factory=dict)
    _streaks: dict[str, int] = field(default_factory=dict)

    def observe(self, record: Figures) -> list[HealthWarning]:
        """Takes one `metrics.jsonl` record (with its `step`); returns the warnings it newly raises."""
        if "source_test_accuracy" not in record:
            self._training = record
            return []
        now = {**self._training, **record}
        raised = []
        for rule in self.rules:
            finding = rule.holds(now, self.evaluations, self.context)
            self._streaks[rule.name] = self._streaks.get(rule.name, 0) + 1 if finding else 0
            if finding and self._streaks[rule.name] == self.consecutive and rule.name not in self.warned():
                raised.append(HealthWarning(rule.name, int(record["step"]), finding.words, rule.advice))
        self.evaluations.append(now)
        self.warnings.extend(raised)
        return raised

    def warned(self) -> set[str]:
        return {warning.rule for warning in self.warnings}

    def latest_findings(self) -> list[str]:
        """`"rule: what it saw"` for each rule that held at the latest evaluation (once may be all a diverging run gets)."""
        if not self.evaluations:
            return []
        now, earlier = self.evaluations[-1], self.evaluations[:-1]
        held = [(rule, rule.holds(now, earlier, self.context)) for rule in self.rules]
        return [f"{rule.name}: {finding.words}" for rule, finding in held if finding]
