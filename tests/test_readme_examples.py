"""The README's "Use one piece in your own loop" runs as written: each Python block is executed
(the pytest example by pytest itself, in a fresh process that loads the plugin from its entry
point, as a user's test suite would)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Use one piece in your own loop"


def _blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


BLOCKS = _blocks()
LOOP_BLOCKS = [block for block in BLOCKS if "def test_" not in block]
PYTEST_BLOCKS = [block for block in BLOCKS if "def test_" in block]


def test_the_section_has_its_three_loop_examples_and_the_pytest_one():
    assert len(LOOP_BLOCKS) == 3
    assert len(PYTEST_BLOCKS) == 1


@pytest.mark.parametrize("block", LOOP_BLOCKS, ids=["adam-loop", "attach-adamw", "certificate"])
def test_loop_example_runs(block):
    exec(compile(block, f"{README.name}: {SECTION}", "exec"), {"__name__": "readme_example"})


def test_pytest_example_runs_with_the_installed_plugin(tmp_path):
    (tmp_path / "test_my_optimizer.py").write_text(PYTEST_BLOCKS[0], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_optimizer.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


OWN_SECTION = "### Your own model and data"


def test_your_own_model_and_data_example_runs(tmp_path):
    """The README's ``runs.run`` example, as written, in a fresh process (an empty registry, as a
    user's script starts): it trains 2 variants x 2 seeds and prints each variant's accuracy."""
    text = README.read_text(encoding="utf-8")
    start = text.index(OWN_SECTION)
    end = text.index("\n### ", start + len(OWN_SECTION))
    blocks = re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)
    assert len(blocks) == 1
    script = tmp_path / "own_model_and_data.py"
    script.write_text(blocks[0], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[-2:]] == ["sgd", "nadam"]
    assert "[4/4]" in result.stdout
