"""The mutants a stopped mutation run left: their names, one a line.

    python tools/mutants_left.py [GLOB ...]

mutmut 3 runs again every mutant a name or glob on its command line matches,
whether it has a result or not; only a run with none skips those that have one.
So a stopped run of some modules is finished by naming the mutants it left
(``make mutate-rest``). Reads the results mutmut keeps in ``mutants/``.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from pathlib import Path


def left(root: Path, globs: list[str]) -> list[str]:
    names = []
    for meta in sorted(root.rglob("*.meta")):
        results = json.loads(meta.read_text()).get("exit_code_by_key", {})
        names += [
            name
            for name, code in results.items()
            if code is None and (not globs or any(fnmatch.fnmatch(name, g) for g in globs))
        ]
    return names


if __name__ == "__main__":
    print("\n".join(left(Path("mutants"), sys.argv[1:])))
