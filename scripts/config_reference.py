"""Writes `docs/configuration.md`, the reference of every config group and key, from the configs and the schema.

    python scripts/config_reference.py            # rewrite the page
    python scripts/config_reference.py --check    # exit 1 if the page differs from what the configs give

The top-level keys come from `configs/train.yaml`; the trainer's keys with their type
(`dann.config.TrainerConfig`), default and meaning (the comments of `configs/trainer/default.yaml`);
each algorithm's hyperparameters with their type and default (`Algorithm.settings`, the
constructor's) and meaning (the class docstring's `Args`); the keys of each option of the other
groups (data, model, optimizer, schedules) with their default, and their meaning from the YAML
comment on their line, else from the docstring of the `_target_` they are passed to.
`tests/test_docs.py` fails when the page is out of date.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
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
        "`scripts/config_reference.py`: the tests fail when it is out of date. The defaults are those of each",
        "option's file; an experiment (`+experiment=NAME`, `configs/experiment/`) changes several at once.",
        "",
        "## Groups",
        "",
        "| group | options |",
        "| --- | --- |",
    ]
    for group in sorted(path for path in CONFIG_DIR.rglob("*") if path.is_dir() and any(path.glob("*.yaml"))):
        options = ", ".join(f"`{path.stem}`" for path in sorted(group.glob("*.yaml")))
        lines.append(f"| `{group.relative_to(CONFIG_DIR).as_posix()}` | {options} |")
    lines += ["", "## Top level", "", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    base, notes = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "train.yaml")), _preceding_comments(CONFIG_DIR / "train.yaml")
    for key in ("seed", "cache_dir"):
        lines.append(f"| `{key}` | {type(base[key]).__name__} | `{base[key]}` | {_cell(notes.get(key, ''))} |")
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
    for group in OPTION_GROUPS:
        for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
            lines += ["", f"## `{group}={path.stem}`", "", _header(path), "", "| key | default | meaning |", "| --- | --- | --- |"]
            comments = _comments(path)
            for key, value, target in _leaves(OmegaConf.to_container(OmegaConf.load(path)), group.replace("/", ".") + "."):
                name = key.rsplit(".", 1)[-1]
                meaning = TARGET if name == "_target_" else comments.get(name) or _arguments(_resolve(target)).get(name, "")
                lines.append(f"| `{key}` | `{value}` | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


TARGET = "the class or function these keys are passed to (Hydra's `_target_`)"
# Groups whose options are plain YAML (the trainer's and the algorithms' keys have a schema, above).
OPTION_GROUPS = ("data", "model", "optimizer", "schedule/adaptation", "schedule/learning_rate")


def _leaves(node: dict, prefix: str, target: str | None = None):
    """(dotted key, value, the `_target_` the key is passed to) of each leaf of a YAML mapping; lists are leaves."""
    target = node.get("_target_", target)
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.", target)
        else:
            yield f"{prefix}{key}", value, target


def _resolve(target: str | None):
    """The class or function a `_target_` names; `None` for none."""
    if target is None:
        return None
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _header(path: Path) -> str:
    """The comment lines at the top of a YAML file, as one paragraph (without `# @package` lines)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            lines.append(line.lstrip("# ").rstrip())
    return " ".join(lines)


def _preceding_comments(path: Path) -> dict[str, str]:
    """`{key: text}` of the comment lines right above each top-level `key:` of a YAML file."""
    found, block = {}, []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            block.append(line.lstrip("# ").rstrip())
        else:
            match = re.match(r"(\w+):", line)
            if match and block:
                found[match.group(1)] = " ".join(block)
            block = []
    return found


def _comments(path: Path) -> dict[str, str]:
    """`{key: comment}` of a YAML file's `key: value  # comment` lines (at any depth)."""
    found = (re.match(r"\s*(\w+):[^#]*#\s*(.*)", line) for line in path.read_text().splitlines())
    return {match.group(1): match.group(2) for match in found if match}


def _arguments(documented: typing.Any) -> dict[str, str]:
    """`{name: description}` of the `Args:` or `Attributes:` sections of the docstring of a function, or of a class
    and its parents; `{}` for `None`."""
    described = {}
    for cls in reversed(getattr(documented, "__mro__", [documented] if documented is not None else [])):
        doc = inspect.getdoc(cls) or ""
        section = doc.partition("Args:\n")[2] or doc.partition("Attributes:\n")[2]
        for names, text in re.findall(r"^    (\w+(?:, \w+)*):[ \n]\s*(.*(?:\n        .*)*)", section, re.MULTILINE):
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
