"""The configs, installed as the package `dann.configs`: Hydra reads them as `pkg://dann.configs`."""
