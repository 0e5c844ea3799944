"""`python -m dann.export run_dir=PATH`: a finished run's classifier, ready to serve without `dann` (`dann.deployment.export_run`).

Writes `<run_dir>/export/saved_model` (signature `serving_default`: raw inputs in, `probabilities`
out) and `<run_dir>/export/model.keras`, and prints the SavedModel's path.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from dann.config import CONFIG_PATH, exit_on_user_error
from dann.deployment import export_run


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        path = export_run(cfg.run_dir)
    print(path)


if __name__ == "__main__":
    main()
