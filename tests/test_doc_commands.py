"""Every shell command of README.md and docs/*.md runs, shortened, or is listed in `NOT_RUN` with the reason.

The commands of one block run in order in one directory, as a reader would type them: a run
that one trains, the next evaluates. Placeholders a reader replaces are replaced: `/data/...`
by small image folders, `/shared/tensorflow_datasets` by the tests' TFDS directory, the dev
split `train[50000:]` by `train[20:]`, `run_dir=...` (or `outputs/...`) by the run the block
trained last, `$PWD` by the directory; an optional `[key=value]` is left out. Training is
shortened: `SHORT_TRAINING` and `SMALL_SPLITS` appended, `--steps 2 --repeats 1` for the
benchmark, one seed for the tables' scripts. TFDS datasets are the small ones of
`small_genuine_dir`. The Python blocks of docs/library.md run in tests/test_docs.py.
Minutes: `python -m pytest -m docs` (`.ci/run` runs it).
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
from tests_support import load_script, write_domain

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Commands (by their start) that the tests do not run, and why.
NOT_RUN = {
    "pip install": "installs packages into the environment: the package tier installs the wheel into a fresh one",
    "python -m pytest": "the test suite itself: .ci/run runs it",
    "tensorboard": "serves a web page until stopped",
    "mkdocs serve": "serves a web page until stopped",
}
SHORT_TRAINING = ["trainer.steps=2", "trainer.log_every=1", "trainer.eval_every=2", "trainer.checkpoint_every=2", "trainer.plots=false",
                  "trainer.batch_size=8"]  # fmt: skip
# Scripts that train each row for several seeds: the tests train one.
SEEDED_TABLES = ("mnist_m_table", "moons_table")
# TFDS pairs read a few hundred digits: what is built does not depend on how many are read.
SMALL_SPLITS = ["data.source_train_split='train[:512]'", "data.source_test_split='test[:200]'", "data.target_train_split='train[:20]'"]
# ... and with the genuine MNIST-M as the source (the reverse pair), the 30 images of the test fixture.
SMALL_GENUINE_SOURCE = ["data.source_train_split='train[:20]'", "data.source_test_split='train[20:]'"]
# What the image-folder commands override besides: resnet50's ImageNet weights would be downloaded.
OFFLINE_MODELS = {"model=resnet50": ["model.feature_extractor.weights=null", "data.preprocessing.image_size=[32,32]"]}
# A run directory a reader substitutes: `run_dir=...`, `outputs/...`, `outputs/<date>/<time>`.
RUN_PLACEHOLDER = re.compile(r"(?<==)(\.\.\.|outputs/\.\.\.|outputs/<date>/<time>)(?=\s|$)")


def _blocks() -> list[tuple[str, list[str]]]:
    """(page:line, its commands) of each bash block: continuations joined, comments and blank lines left out."""
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(r"```bash\n(.*?)```", text, re.DOTALL):
            lines = match.group(1).replace("\\\n", " ").splitlines()
            commands = [command.strip() for line in lines for command in re.sub(r"\s+#.*$", "", line).split(" && ")]
            line_number = text[: match.start()].count("\n") + 1
            blocks.append((f"{page.relative_to(REPO)}:{line_number}", [command for command in commands if command]))
    return blocks


BLOCKS = _blocks()


def test_every_block_is_found_and_every_command_is_run_or_says_why_not():
    commands = [command for _, block in BLOCKS for command in block]
    assert len(BLOCKS) >= 15 and len(commands) >= 40
    unknown = [command for command in commands if _reason_not_run(command) is None and not command.startswith("python ")]
    assert unknown == []  # a command that is neither run nor listed in NOT_RUN


def _reason_not_run(command: str) -> str | None:
    return next((reason for start, reason in NOT_RUN.items() if command.startswith(start)), None)


@pytest.mark.docs
@pytest.mark.parametrize("where, commands", BLOCKS, ids=[where for where, _ in BLOCKS])
def test_documented_commands_run(where, commands, tmp_path, monkeypatch, run_command, small_genuine_dir):
    from tensorflow_datasets.core import constants

    monkeypatch.setattr(constants, "DATA_DIR", str(small_genuine_dir))  # TFDS read $TFDS_DATA_DIR when imported
    monkeypatch.chdir(tmp_path)
    write_domain(tmp_path / "data" / "photos", size=(32, 32))
    write_domain(tmp_path / "data" / "sketches", size=(32, 32), brightness=30)
    (tmp_path / "my_configs" / "experiment").mkdir(parents=True)
    (tmp_path / "my_configs" / "experiment" / "my_pair.yaml").write_text("# @package _global_\ndefaults:\n  - moons\n")

    def in_this_process(command, **options):  # the `python -m dann.train ...` runs of the scripts' grids (dann.grid)
        return run_command(command[2], *_shortened(command[3:]), cwd=tmp_path)

    monkeypatch.setattr("dann.grid.subprocess.run", in_this_process)
    for command in commands:
        if _reason_not_run(command):
            continue
        arguments = _substituted(command.replace("/shared/tensorflow_datasets", str(small_genuine_dir)), tmp_path)
        if arguments[:2] == ["python", "-m"]:
            module, options = arguments[2], arguments[3:]
            if module == "dann.train":
                options = _shortened(options)
            elif module == "dann.benchmark":
                options += ["--steps", "2", "--repeats", "1"]
            done = run_command(module, *options, cwd=tmp_path)
        else:
            assert arguments[0] == "python" and arguments[1].startswith("scripts/"), command
            done = _run_script(arguments[1], arguments[2:], monkeypatch)
        assert done.returncode == 0, f"{where}: {command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def _shortened(options: list[str]) -> list[str]:
    """A `dann.train` command line's `options` with fewer steps and fewer examples (replacing its own values of these keys)."""
    from dann.config import compose_config

    data_choices = [option for option in options if option.startswith(("+experiment=", "data=", "hydra.searchpath="))]
    data = compose_config(data_choices).data
    tfds = "source_train_split" in data
    shortening = [
        *SHORT_TRAINING,
        *(SMALL_SPLITS if tfds else []),
        *(SMALL_GENUINE_SOURCE if tfds and data.source == "mnist_m/original" else []),
        *(extra for model, extras in OFFLINE_MODELS.items() if model in options for extra in extras),
    ]
    replaced = {override.split("=", 1)[0] for override in shortening}
    return [*(option for option in options if option.split("=", 1)[0] not in replaced), *shortening]


def _substituted(command: str, directory: Path) -> list[str]:
    """`command`'s arguments with a reader's placeholders replaced (module docstring)."""
    command = command.replace("/data/", f"{directory}/data/").replace("$PWD", str(directory))
    command = command.replace("train[50000:]", "train[20:]")  # the dev split of the 30 genuine training images
    runs = sorted((path.parent for path in directory.glob("**/results.json")), key=lambda path: path.stat().st_mtime)
    if RUN_PLACEHOLDER.search(command):
        assert runs, f"{command}: no run trained before it in its block"
        command = RUN_PLACEHOLDER.sub(str(runs[-1]), command)
    return [argument for argument in shlex.split(command) if not (argument.startswith("[") and argument.endswith("]"))]


def _run_script(path: str, arguments: list[str], monkeypatch):
    """Runs `python <path> <arguments>` in this process (its training runs shortened by `dann.grid`'s stand-in);
    returns an object with `returncode`, `stdout`, `stderr`."""
    script = load_script(Path(path).stem)
    if Path(path).stem in SEEDED_TABLES:  # one seed of each row: the later `--seeds` wins
        split = arguments.index("--") if "--" in arguments else len(arguments)
        arguments = [*arguments[:split], "--seeds", "0", *arguments[split:]]
    monkeypatch.setattr(sys, "argv", [path, *arguments])
    try:
        status = script.main() or 0
    except SystemExit as exit:
        status = exit.code or 0
    return type("Done", (), {"returncode": status, "stdout": "", "stderr": ""})()
