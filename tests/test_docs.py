"""The user's pages: the library examples run as printed (with fewer steps), and no page reads as a work log."""

import re
from pathlib import Path

import pytest
from tests_support import load_script

REPO = Path(__file__).resolve().parent.parent
LIBRARY_PAGE = REPO / "docs" / "library.md"
# README and docs pages; history lives in CHANGELOG.md, measurement logs in docs/notes/.
USER_PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
WORK_LOG = re.compile(r"\bissue \d+|\bsessions?\b|\bsittings?\b|\bthis machine\b|\bcommit [0-9a-f]{7,40}\b", re.IGNORECASE)


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda path: path.name)
def test_user_pages_hold_no_work_log_words(page):
    text = page.read_text().replace("keras-team/keras issue", "")  # an upstream issue, named for the reader
    assert [match.group(0) for match in WORK_LOG.finditer(text)] == []


@pytest.mark.slow
def test_library_example_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the Keras example writes a weights file
    section = LIBRARY_PAGE.read_text()
    loop_example, keras_example = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    code = loop_example + keras_example.replace("steps_per_epoch=500", "steps_per_epoch=10").replace("epochs=4", "epochs=2")
    code = code.replace("steps=2000", "steps=20").replace("total_steps=2000", "total_steps=20")
    code = code.replace("log_every=200", "log_every=10").replace("eval_every=1000", "eval_every=20")
    namespace = {}
    exec(compile(code, str(LIBRARY_PAGE), "exec"), namespace)
    results = namespace["results"]
    assert results["steps"] == 20
    assert 0.0 <= results["target_test_accuracy"] <= 1.0
    assert int(namespace["algorithm"].optimizer.iterations) == 40 and (tmp_path / "dann.weights.h5").exists()


def test_the_configuration_page_is_generated_from_the_current_configs():
    config_reference = load_script("config_reference")
    assert config_reference.PAGE.read_text() == config_reference.render(), "run python scripts/config_reference.py"
