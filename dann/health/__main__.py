"""`python -m dann.health run_dir=PATH`: prints the health report of a finished or running run (`dann.health.report`).

Exits with status 1 when the report has a warning.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from dann.config import CONFIG_PATH, exit_on_user_error
from dann.health.report import health_report


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="health")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        report, monitor = health_report(cfg.run_dir)
    print(report)
    if monitor.warnings:
        sys.exit(1)


if __name__ == "__main__":
    main()
