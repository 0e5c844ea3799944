"""The README's library example runs as printed (with fewer steps)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_library_example_trains():
    section = README.read_text().split("### As a library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    code = code.replace("steps=2000", "steps=20").replace("total_steps=2000", "total_steps=20")
    code = code.replace("log_every=200", "log_every=10").replace("eval_every=1000", "eval_every=20")
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    results = namespace["results"]
    assert results["steps"] == 20
    assert 0.0 <= results["target_test_accuracy"] <= 1.0
