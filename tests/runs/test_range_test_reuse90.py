"""A range test saved by an earlier version is reused with a note when this version's rules read
its saved curve otherwise (the review of stop 90's warm-up rule: a clr --quick folder kept the old
rule's clr_base_lr 0.2779 where a fresh run measures 0.2134, silently)."""

from __future__ import annotations

import json

import pytest

from runs.cli import main
from tests.runs.helpers import FASTEST, SHORT_RANGE_TEST

# a range test whose numbers no variant uses, so that editing them changes no run
WITH_RANGE_TEST = FASTEST.replace('name = "tiny"', 'name = "swept"') + SHORT_RANGE_TEST


@pytest.fixture
def swept(tmp_path, mnist1d_cache):
    path = tmp_path / "swept.toml"
    path.write_text(WITH_RANGE_TEST)
    args = ["run", str(path), "--logdir", str(tmp_path), "--quiet"]
    assert main(args) == 0
    return args, tmp_path / "swept" / "range_test.json"


def test_a_range_test_read_otherwise_by_these_rules_is_kept_with_a_note(swept, capsys):
    args, saved_file = swept
    saved = json.loads(saved_file.read_text())
    measured = saved["values"]["clr_base_lr"]
    assert measured is not None
    saved["values"]["clr_base_lr"] = measured / 7  # (as an earlier rule might have read it)
    saved_file.write_text(json.dumps(saved))
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("note: range_test.json")]
    assert len(notes) == 1, out
    assert f"clr_base_lr = {measured / 7:.4g} (now {measured:.4g})" in notes[0]
    assert json.loads(saved_file.read_text())["values"]["clr_base_lr"] == measured / 7  # kept


def test_a_range_test_these_rules_read_alike_gets_no_note(swept, capsys):
    args, _ = swept
    capsys.readouterr()
    assert main(args) == 0
    assert "note: range_test.json" not in capsys.readouterr().out
