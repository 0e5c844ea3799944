"""`python -m dann.plot run_dir=PATH [before=RUN_DIR] [max_examples=500]`: a run's figures, as PNG files.

Writes `learning_curves.png` and `embedding.png` into the run directory (see `dann.figures`).
Needs the `plot` extra: `pip install 'dann[plot]'` (matplotlib, scikit-learn).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from dann.config import CONFIG_PATH, exit_on_user_error
from dann.figures import plot_run


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="plot")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        paths = plot_run(cfg.run_dir, cfg.before, cfg.max_examples)
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
