"""Domain-Adversarial Neural Networks (Ganin et al., JMLR 2016) in TensorFlow 2 / Keras 3."""

from importlib.metadata import PackageNotFoundError, version

from dann import data, schedules
from dann.algorithms import CDAN, DANN, DIRTT, VADA, Algorithm, SourceOnly, TargetOnly
from dann.gradient_checks import GradientCoverageError, gradient_coverage, gradient_flow, verify_gradients
from dann.keras_model import DomainAdversarialModel
from dann.layers import GradientReversal, reverse_gradient
from dann.loop import NonFiniteLossError, TrainerSettings, fit
from dann.models import AdaptationModel, build_adaptation_model, classifier_head, conv_stack, dense_stack
from dann.runs import RunDirectoryError, load_model

try:
    __version__ = version("dann")  # one source: pyproject.toml's, as installed
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CDAN",
    "DANN",
    "DIRTT",
    "VADA",
    "Algorithm",
    "SourceOnly",
    "TargetOnly",
    "AdaptationModel",
    "DomainAdversarialModel",
    "GradientCoverageError",
    "GradientReversal",
    "TrainerSettings",
    "NonFiniteLossError",
    "RunDirectoryError",
    "build_adaptation_model",
    "classifier_head",
    "conv_stack",
    "data",
    "dense_stack",
    "fit",
    "gradient_coverage",
    "gradient_flow",
    "load_model",
    "reverse_gradient",
    "schedules",
    "verify_gradients",
]
