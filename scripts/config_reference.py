"""Writes `docs/configuration.md`, the reference of every config group and key, from the configs and the schema.

    python scripts/config_reference.py            # rewrite the page
    python scripts/config_reference.py --check    # exit 1 if the page differs from what the configs give

The trainer's keys come with their type (`dann.config.TrainerConfig`), default and meaning (the
comments of `configs/trainer/default.yaml`); each algorithm's hyperparameters with their type and
default (`Algorithm.settings`, the constructor's) and meaning (the class docstring's `Args`).
`tests/test_docs.py` fails when the page is out of date.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import typing
from pathlib import Path

from omegaconf import OmegaConf

from dann.config import ALGORITHM_SCHEMAS, CONFIG_DIR, TrainerConfig

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def render() -> str:
    """The page's Markdown."""
    lines = [
        "# Configuration",
        "",
        "Every key below is set on the command line (`python -m dann.train +experiment=moons trainer.steps=500`);",
        "a group is swapped whole (`algorithm=vada`). Generated from the configs and the schema by",
        "`scripts/config_reference.py`: the tests fail when it is out of date.",
        "",
        "## Groups",
        "",
        "| group | options |",
        "| --- | --- |",
    ]
    for group in sorted(path for path in CONFIG_DIR.rglob("*") if path.is_dir() and any(path.glob("*.yaml"))):
        options = ", ".join(f"`{path.stem}`" for path in sorted(group.glob("*.yaml")))
        lines.append(f"| `{group.relative_to(CONFIG_DIR).as_posix()}` | {options} |")
    lines += ["", "## `trainer`", "", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    defaults, meanings = OmegaConf.load(CONFIG_DIR / "trainer" / "default.yaml"), _comments(CONFIG_DIR / "trainer" / "default.yaml")
    for key in dataclasses.fields(TrainerConfig):
        lines.append(
            f"| `trainer.{key.name}` | {_cell(_type_name(key.type))} | `{defaults[key.name]}` | {_cell(meanings.get(key.name, ''))} |"
        )
    for name, algorithm in ALGORITHM_SCHEMAS.items():
        lines += ["", f"## `algorithm={name}` ({algorithm.__name__})", ""]
        settings, meanings = algorithm.settings(), _arguments(algorithm)
        if not settings:
            lines.append("No hyperparameters.")
            continue
        lines += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for key, (hint, default) in settings.items():
            lines.append(f"| `algorithm.{key}` | {_cell(_type_name(hint))} | `{default}` | {_cell(meanings.get(key, ''))} |")
    return "\n".join(lines) + "\n"


def _comments(path: Path) -> dict[str, str]:
    """`{key: comment}` of a flat YAML file's `key: value  # comment` lines."""
    found = (re.match(r"(\w+):[^#]*#\s*(.*)", line) for line in path.read_text().splitlines())
    return {match.group(1): match.group(2) for match in found if match}


def _arguments(algorithm: type) -> dict[str, str]:
    """`{name: description}` of the `Args:` sections of `algorithm`'s docstring and its parents'."""
    described = {}
    for cls in reversed(algorithm.__mro__):
        section = (inspect.getdoc(cls) or "").partition("Args:\n")[2]
        for names, text in re.findall(r"^    (\w+(?:, \w+)*): (.*(?:\n        .*)*)", section, re.MULTILINE):
            described.update(dict.fromkeys(names.split(", "), " ".join(text.split())))
    return described


def _type_name(hint: typing.Any) -> str:
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if args.check:
        stale = (PAGE.read_text() if PAGE.exists() else "") != render()
        print(f"{PAGE} is {'out of date: run python scripts/config_reference.py' if stale else 'up to date'}")
        return int(stale)
    PAGE.write_text(render())
    print(PAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
