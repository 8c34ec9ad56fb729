"""tools/mutants_left.py: the mutants a stopped run left, and only those."""

from __future__ import annotations

import json
from pathlib import Path

from tools.mutants_left import left


def test_only_the_mutants_with_no_result_that_a_glob_matches(tmp_path: Path) -> None:
    results = {"m.a.x_f__mutmut_1": 1, "m.a.x_f__mutmut_2": None, "m.a.x_g__mutmut_1": 0}
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.py.meta").write_text(json.dumps({"exit_code_by_key": results}))
    other = {"m.b.x_h__mutmut_1": None}
    (tmp_path / "m" / "b.py.meta").write_text(json.dumps({"exit_code_by_key": other}))
    assert left(tmp_path, ["m.a*"]) == ["m.a.x_f__mutmut_2"]
    assert left(tmp_path, []) == ["m.a.x_f__mutmut_2", "m.b.x_h__mutmut_1"]
