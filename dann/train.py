"""`python -m dann.train +experiment=NAME key=value ...`: train, evaluate, and save a run.

A finished run directory (`hydra.run.dir`) holds:
  config.yaml     the resolved config
  metrics.jsonl   one JSON line per logging or evaluation interval
  results.json    final accuracies, steps, train_seconds, seed, and domain separability
                  (domain classifier accuracy, proxy A-distance of inputs and of features)
  model.keras     the trained `DANNModel`; load it with `dann.load_model(run_dir)`
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import keras
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dann.config import build_algorithm, build_datasets, build_model, loop_settings, register_configs
from dann.evaluation import domain_metrics
from dann.loop import fit

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Trains as `cfg` says, writes the run's files into `run_dir`, and returns `results.json`'s content."""
    settings = loop_settings(cfg)  # validates before anything is built
    keras.utils.set_random_seed(cfg.seed)
    datasets = build_datasets(cfg)
    model = build_model(cfg, datasets)
    algorithm = build_algorithm(cfg, model)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    results = fit(algorithm, datasets, settings, metrics_path=run_dir / "metrics.jsonl")
    model.save(run_dir / MODEL_FILE)
    results["seed"] = cfg.seed
    results.update(domain_metrics(model, datasets, seed=cfg.seed))
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log.info("results in %s: %s", run_dir, results)
    return results


def load_model(run_dir: str | Path) -> keras.Model:
    """The trained `DANNModel` of a finished run; `model(images)` gives class logits."""
    path = Path(run_dir) / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a finished `python -m dann.train` run directory?")
    return keras.saving.load_model(path)


register_configs()


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float:
    results = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    return results["target_test_accuracy"]  # what a Hydra sweeper would optimise


if __name__ == "__main__":
    main()
