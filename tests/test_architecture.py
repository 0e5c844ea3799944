"""The package's layers: commands on top, importing the library; the library never imports a command, nor Hydra below the config."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# `python -m <command>` modules: they parse a command line and print, over library functions.
COMMANDS = {"dann.train", "dann.evaluate", "dann.diagnose", "dann.plot", "dann.export", "dann.benchmark", "dann.health.__main__",
            "dann.data.__main__"}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function (`from a import b` counts as `a` and `a.b`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


PACKAGE = {_module_name(path): _imports(path) for path in (REPO / "dann").rglob("*.py")}


def test_no_module_script_or_test_imports_a_command():
    files = [*(REPO / "dann").rglob("*.py"), *(REPO / "scripts").glob("*.py"), *(REPO / "tests").glob("*.py")]
    offenders = {str(path.relative_to(REPO)): sorted(_imports(path) & (COMMANDS - {_module_name(path)})) for path in files}
    assert {path: commands for path, commands in offenders.items() if commands} == {}


def test_every_command_runs_its_main_as_a_program():
    """Each command runs `main()` when executed as `__main__` (`python -m`, or `run_command` in conftest.py)."""
    guard = ast.parse('if __name__ == "__main__":\n    main()').body[0]
    for command in COMMANDS:
        last = ast.parse((REPO / (command.replace(".", "/") + ".py")).read_text()).body[-1]
        assert ast.dump(last) == ast.dump(guard), f"{command} does not end with the guard that calls main()"


def test_nothing_below_the_config_layer_imports_hydra():
    below, todo = set(), ["dann.config"]
    while todo:  # the dann modules dann.config imports, directly or not
        for name in PACKAGE[todo.pop()]:
            module = name if name in PACKAGE else name.rpartition(".")[0]
            if module in PACKAGE and module not in below and module != "dann.config":
                below.add(module)
                todo.append(module)
    assert {"dann.loop", "dann.models", "dann.precision"} <= below  # the walk follows imports
    assert sorted(module for module in below if any(name.split(".")[0] == "hydra" for name in PACKAGE[module])) == []
