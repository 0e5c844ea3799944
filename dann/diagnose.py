"""`python -m dann.diagnose +experiment=NAME [algorithm=NAME]`: what a run would use, and which variables get gradients.

Builds the model and algorithm exactly as `dann.train` would, prints the devices, the
strategy's replicas and the precision a run would train in, takes one batch pair, and
prints the gradient coverage of one update and the gradient flow of each loss against the
components the algorithm declares (`dann.diagnosis.diagnose`). Exits with status 1 when a
variable gets no gradient, a loss reaches the wrong components, or the reversal is broken.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from dann.config import CONFIG_PATH, exit_on_user_error, register_configs
from dann.diagnosis import diagnose

register_configs()


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="diagnose")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        diagnosis = diagnose(cfg)
    print(diagnosis)
    if not diagnosis.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
