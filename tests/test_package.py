"""The package as a user installs it: a wheel built from this checkout, installed into a fresh virtual environment
and run from a directory outside the checkout. Builds and installs, so a minute or two: `python -m pytest -m package`
(`.ci/run` runs it after the suite)."""

import importlib.metadata
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from tests_support import TINY_OVERRIDES

REPO = Path(__file__).resolve().parent.parent
# Distributions that each install the `tensorflow` package: two of them overwrite each other's files.
TENSORFLOW_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos", "tf-nightly", "tf-nightly-cpu"}


def test_one_tensorflow_distribution_is_installed():
    installed = {distribution.metadata["Name"].lower().replace("_", "-") for distribution in importlib.metadata.distributions()}
    assert len(installed & TENSORFLOW_DISTRIBUTIONS) == 1, sorted(installed & TENSORFLOW_DISTRIBUTIONS)


@pytest.mark.package
def test_the_gpu_extra_resolves_to_one_tensorflow_distribution(tmp_path):
    """What `pip install '.[gpu]'` would install, resolved from the package index without installing it."""
    report = tmp_path / "report.json"
    resolved = subprocess.run(
        [sys.executable, "-m", "pip", "install", f"{REPO}[gpu]", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report)],
        capture_output=True,
        text=True,
    )
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())["install"]}
    assert names & TENSORFLOW_DISTRIBUTIONS == {"tensorflow"}
    assert any(name.startswith("nvidia-cudnn") for name in names)  # the CUDA libraries come with it


@pytest.mark.package
def test_the_wheel_installs_and_trains_outside_the_checkout(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("dann-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"dann/configs/train.yaml", "dann/configs/experiment/moons.yaml", "dann/configs/algorithm/dann.yaml"} <= names
    assert not any(name.startswith(("tests/", "scripts/", "configs/")) for name in names)

    # The environment's own packages serve as the dependencies (no download); the wheel's dann shadows any other.
    environment = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(environment)], check=True)
    python = str(environment / "bin" / "python")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--ignore-installed", str(wheel)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([python, "-c", "import dann, dann.configs; print(dann.__file__); print(dann.__version__)"],
                           cwd=elsewhere, capture_output=True, text=True)  # fmt: skip
    assert where.returncode == 0, where.stderr[-3000:]
    module, version = where.stdout.split()
    assert Path(module).is_relative_to(environment) and version == importlib.metadata.version("dann")

    trained = subprocess.run([python, "-m", "dann.train", "+experiment=moons", *TINY_OVERRIDES, "hydra.run.dir=run"],
                             cwd=elsewhere, capture_output=True, text=True)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads((elsewhere / "run" / "results.json").read_text())["steps"] == 20
