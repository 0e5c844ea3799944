"""The README's library examples run as printed (with fewer steps)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow
def test_library_example_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the Keras example writes a weights file
    section = README.read_text().split("### As a library", 1)[1].split("\n## ", 1)[0]
    loop_example, keras_example = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    code = loop_example + keras_example.replace("steps_per_epoch=500", "steps_per_epoch=10").replace("epochs=4", "epochs=2")
    code = code.replace("steps=2000", "steps=20").replace("total_steps=2000", "total_steps=20")
    code = code.replace("log_every=200", "log_every=10").replace("eval_every=1000", "eval_every=20")
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    results = namespace["results"]
    assert results["steps"] == 20
    assert 0.0 <= results["target_test_accuracy"] <= 1.0
    assert int(namespace["algorithm"].optimizer.iterations) == 40 and (tmp_path / "dann.weights.h5").exists()
