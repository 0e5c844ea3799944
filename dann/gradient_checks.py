"""Checks that an algorithm's gradients reach every variable, each loss flows as declared, and the reversal is intact.

Two failures are common in hand-written DANN loops and invisible in the loss curves:
gradients taken for only some variables (the rest never train), and a
`tf.stop_gradient` before the reversal (the feature extractor never sees the
domain loss, so DANN silently becomes source-only training). Each algorithm declares
which components each of its losses must reach and which tensors must stay constant
(`Algorithm.gradient_paths`, `Algorithm.CONSTANTS`); `verify_gradients` checks all of it
before the first update; `python -m dann.diagnose` prints the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from dann.algorithms.base import Algorithm, GradientsAndVariables


class GradientCoverageError(RuntimeError):
    """Some trainable variables would not be updated, or the reversal is cut off."""


@dataclass
class VariableGradient:
    """One variable's gradient status: `"ok"`, `"none"` (no gradient) or `"zero"` (all zeros)."""

    component: str
    path: str
    shape: tuple[int, ...]
    status: str
    norm: float


@dataclass
class CoverageReport:
    """Which variables got a gradient, grouped by component. `ok` when none got `None`."""

    rows: list[VariableGradient] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def missing(self) -> list[str]:
        """Paths of the variables that got no gradient."""
        return [row.path for row in self.rows if row.status == "none"]

    @property
    def zero(self) -> list[str]:
        """Paths of the variables whose gradient is all zeros (connected, but no signal)."""
        return [row.path for row in self.rows if row.status == "zero"]

    def by_component(self) -> dict[str, dict[str, int]]:
        """`{component: {"ok": n, "none": n, "zero": n}}`."""
        summary: dict[str, dict[str, int]] = {}
        for row in self.rows:
            counts = summary.setdefault(row.component, {"ok": 0, "none": 0, "zero": 0})
            counts[row.status] += 1
        return summary

    def __str__(self) -> str:
        lines = [f"{'component':<20} {'variable':<52} {'shape':<16} {'gradient':<8} {'norm':>10}"]
        for row in self.rows:
            lines.append(f"{row.component:<20} {row.path:<52} {str(row.shape):<16} {row.status:<8} {row.norm:>10.3g}")
        verdict = "every trainable variable gets a gradient" if self.ok else f"{len(self.missing)} variable(s) get NO gradient"
        lines.append(f"coverage: {verdict}" + (f"; {len(self.zero)} get an all-zero gradient" if self.zero else ""))
        return "\n".join(lines)


def gradient_coverage(
    variables: Sequence[tf.Variable],
    gradients: Sequence[tf.Tensor | None],
    groups: Mapping[str, Sequence[tf.Variable]] | None = None,
) -> CoverageReport:
    """Reports, per variable, whether it received a gradient.

    Args:
        variables: the variables that must be updated, e.g. `model.trainable_variables`.
        gradients: their gradients, aligned with `variables`; `None` where there is none.
        groups: optional `{component: variables}` for grouping the report; by default a
            variable belongs to the second segment of its path (`dann/<component>/...`).

    Returns:
        A `CoverageReport`; print it for a table.
    """
    if len(variables) != len(gradients):
        raise ValueError(
            f"gradient_coverage: got {len(variables)} variables but {len(gradients)} gradients; "
            "pass one gradient (or None) per variable, in the same order."
        )
    component_of = {id(v): name for name, members in (groups or {}).items() for v in members}
    rows = []
    for variable, gradient in zip(variables, gradients):
        path = getattr(variable, "path", variable.name)
        component = component_of.get(id(variable)) or _component_from_path(path)
        if gradient is None:
            status, norm = "none", 0.0
        else:
            norm = float(tf.norm(tf.cast(tf.convert_to_tensor(gradient), tf.float32)))
            status = "ok" if norm > 0 else "zero"
        rows.append(VariableGradient(component, path, tuple(variable.shape), status, norm))
    return CoverageReport(rows)


def coverage_of_update(variables: Sequence[tf.Variable], gradients_and_variables: GradientsAndVariables) -> CoverageReport:
    """`gradient_coverage` of an update given as `(gradient, variable)` pairs, which may omit variables."""
    gradient_of = {id(v): g for g, v in gradients_and_variables}
    return gradient_coverage(variables, [gradient_of.get(id(v)) for v in variables])


@dataclass
class GradientFlow:
    """Which components each loss reaches, against what the algorithm declares, and the reversal's scale.

    `norms[loss][component]` is the gradient norm of `loss` over the component's variables,
    or `None` where the loss reaches none of them. `expected[loss]` is the set of components
    the loss must reach, and no others (`Algorithm.gradient_paths`). `constants[name]` lists
    the components whose variables get a gradient through a tensor the algorithm declares
    constant (e.g. VAT's perturbation); it must be empty. `reversal_scale` is
    `<g_model, g_plain> / <g_plain, g_plain>` over the feature extractor's variables, where
    `g_model` is the reversed loss's gradient through the model (and its reversal) and
    `g_plain` the gradient of the same loss without the reversal: a correct reversal gives
    `-lambda`. `None` when the algorithm reverses nothing or no such gradient reaches the features.
    """

    norms: dict[str, dict[str, float | None]]
    expected: dict[str, frozenset[str]]
    lambda_: float
    reversal_scale: float | None
    reversed_loss: str | None = None
    partial: list[tuple[str, str]] = field(default_factory=list)
    constants: dict[str, list[str]] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        """Human-readable descriptions of every deviation from the algorithm's gradient paths."""
        found = []
        for loss_name, expected in self.expected.items():
            for component, norm in self.norms[loss_name].items():
                if component in expected and norm is None:
                    found.append(f"{component} gets no gradient from the {loss_name}")
                elif component not in expected and norm is not None:
                    found.append(f"{component} gets a gradient from the {loss_name}, which must not reach it")
        found += [f"only some variables of {component} get a gradient from the {loss_name}" for loss_name, component in self.partial]
        for name, components in self.constants.items():
            if components:
                found.append(f"{name} must be a constant, but gradients reach {', '.join(components)} through it (tf.stop_gradient)")
        if self.reversed_loss is not None and self.norms[self.reversed_loss].get("feature_extractor") is not None:
            if self.reversal_scale is None or not np.isclose(self.reversal_scale, -self.lambda_, rtol=1e-3, atol=1e-6):
                found.append(
                    f"the {self.reversed_loss} gradient reaching the feature extractor is scaled by {self.reversal_scale}, "
                    f"expected {-self.lambda_:g} (-lambda): the reversal is missing or misplaced"
                )
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        components = sorted({c for per_loss in self.norms.values() for c in per_loss})
        width = max(len(name) for name in self.norms) + 2
        lines = [f"{'loss':<{width}} " + " ".join(f"{c:>18}" for c in components) + "   must reach"]
        for loss_name, per_component in self.norms.items():
            cells = ["-" if per_component.get(c) is None else f"{per_component[c]:.3g}" for c in components]
            lines.append(
                f"{loss_name:<{width}} " + " ".join(f"{cell:>18}" for cell in cells) + "   " + ", ".join(sorted(self.expected[loss_name]))
            )
        for name, reached in self.constants.items():
            lines.append(
                f"constant {name}: " + ("no gradient passes through it" if not reached else "gradients pass to " + ", ".join(reached))
            )
        if self.reversed_loss is not None:
            scale = "n/a" if self.reversal_scale is None else f"{self.reversal_scale:.4g}"
            lines.append(f"reversal: {self.reversed_loss} gradient at the features is scaled by {scale} (expected {-self.lambda_:g})")
        lines.append("flow: " + ("as the algorithm declares" if self.ok else "; ".join(self.problems)))
        return "\n".join(lines)


def gradient_flow(algorithm: Algorithm, source_x, source_y, target_x, lambda_: float = 1.0) -> GradientFlow:
    """Measures which components each of the algorithm's losses reaches on one batch pair.

    Args:
        algorithm: the algorithm whose `forward` is checked against its `gradient_paths`.
        source_x, source_y, target_x: one batch pair, as for `Algorithm.update`.
        lambda_: the reversal strength to probe with; > 0 so that a reversed gradient
            is distinguishable from a cut one.
    """
    model = algorithm.model
    expected = algorithm.gradient_paths()
    components = model.components.items()
    with tf.GradientTape(persistent=True) as tape:
        terms = algorithm.forward(source_x, source_y, target_x, tf.constant(lambda_, tf.float32), training=False)
    gradients = {
        loss_name: {component: tape.gradient(terms[loss_name], network.trainable_variables) for component, network in components}
        for loss_name in expected
    }
    norms = {loss_name: {component: _norm(g) for component, g in per_loss.items()} for loss_name, per_loss in gradients.items()}
    partial = [
        (loss_name, component)
        for loss_name, per_loss in gradients.items()
        for component, g in per_loss.items()
        if 0 < sum(gradient is not None for gradient in g) < len(g)
    ]
    constants = {
        name: [c for c, network in components if any(g is not None for g in tape.gradient(terms[name], network.trainable_variables))]
        for name in algorithm.CONSTANTS
        if name in terms
    }
    reversed_loss = algorithm.REVERSED_LOSS
    scale = None
    if reversed_loss is not None:
        scale = _reversal_scale(algorithm, source_x, source_y, target_x, gradients[reversed_loss]["feature_extractor"])
    del tape
    return GradientFlow(norms, expected, lambda_, scale, reversed_loss, partial, constants)


def verify_gradients(algorithm: Algorithm, source_x, source_y, target_x, step) -> tuple[CoverageReport, GradientFlow]:
    """Raises `GradientCoverageError` unless every variable is updated and every loss flows as declared.

    Run once before the first update: computes the gradients of `algorithm.compute_gradients`
    (no update is applied) and the per-loss flow of `algorithm.forward`.
    """
    _, gradients_and_variables = algorithm.compute_gradients(source_x, source_y, target_x, step)
    coverage = coverage_of_update(algorithm.model.trainable_variables, gradients_and_variables)
    flow = gradient_flow(algorithm, source_x, source_y, target_x)
    if not coverage.ok or not flow.ok:
        problems = [f"no gradient reaches {path}" for path in coverage.missing] + flow.problems
        raise GradientCoverageError(
            f"{type(algorithm).__name__} training would not update the model as it must:\n  - "
            + "\n  - ".join(problems)
            + "\nEvery trainable variable must get a gradient from one tape over the algorithm's total loss, each "
            "loss must reach exactly the components its algorithm declares (gradient_paths), and the domain "
            "gradient must pass the gradient reversal (no tf.stop_gradient before it). "
            "Run `python -m dann.diagnose` with the same config for the full tables."
        )
    return coverage, flow


def _reversal_scale(algorithm: Algorithm, source_x, source_y, target_x, through_model) -> float | None:
    feature_variables = algorithm.model.feature_extractor.trainable_variables
    if any(g is None for g in through_model) or not feature_variables:
        return None
    # The same loss without the reversal: the domain classifier's own objective, differentiated into the features.
    with tf.GradientTape() as tape:
        plain_loss = algorithm.forward(source_x, source_y, target_x, None, training=False)[algorithm.REVERSED_LOSS]
    plain = tape.gradient(plain_loss, feature_variables)
    if any(g is None for g in plain):
        return None
    model_flat = tf.concat([tf.reshape(g, [-1]) for g in through_model], axis=0)
    plain_flat = tf.concat([tf.reshape(g, [-1]) for g in plain], axis=0)
    denominator = float(tf.reduce_sum(plain_flat * plain_flat))
    if denominator == 0.0:
        return None
    return float(tf.reduce_sum(model_flat * plain_flat)) / denominator


def _norm(gradients: Sequence[tf.Tensor | None]) -> float | None:
    """The global norm of the gradients present, or `None` when there are none."""
    present = [g for g in gradients if g is not None]
    return float(tf.linalg.global_norm(present)) if present else None


def _component_from_path(path: str) -> str:
    parts = path.split("/")
    return parts[1] if len(parts) > 2 else parts[0]
