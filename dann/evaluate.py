"""`python -m dann.evaluate run_dir=PATH dataset=NAME split=SPLIT`: accuracy of a finished run (`dann.deployment.evaluate_run`).

`dataset` is any dataset TFDS knows (`mnist_m/original`, `svhn_cropped`; `split` e.g. `test[:1000]`)
or a folder of class folders of images; overall and per-class accuracy are printed and written to
`<run_dir>/eval_<dataset>_<split>.json`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from dann.config import CONFIG_PATH, exit_on_user_error
from dann.deployment import evaluate_run


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        figures = evaluate_run(cfg.run_dir, cfg.dataset, cfg.split, cfg.data_dir, cfg.batch_size)
    print(f"{figures['dataset']} {figures['split']}: accuracy {figures['accuracy']:.4f} on {figures['num_examples']} examples")
    for label, value in enumerate(figures["per_class_accuracy"]):
        print(f"  class {label}: " + ("no examples" if value is None else f"{value:.4f}"))


if __name__ == "__main__":
    main()
