"""Write ``proxy/surfaces/kinds.py``: the kinds, states and roles the APIs define.

Reads the request types of the installed ``openai`` and ``anthropic`` SDKs
(every ``type``, ``status`` and ``role`` field given as a ``Literal``) and
prints the module; run it again after a new SDK:

    .venv/bin/python tools/defined_kinds.py > proxy/surfaces/kinds.py
"""

from __future__ import annotations

import re
from importlib import import_module
from importlib.metadata import version
from pathlib import Path

# What model servers define beyond the SDKs: vLLM's content parts.
SERVERS_KINDS = frozenset({"audio_url", "video_url", "image_embeds", "audio_embeds", "image_pil"})
FIELDS = ("type", "status", "role")


def literals(field: str, sdks: tuple[str, ...]) -> set[str]:
    found: set[str] = set()
    pattern = re.compile(rf"^\s+{field}: (?:Required\[)?Literal\[([^\]]+)\]", re.MULTILINE)
    for name in sdks:
        root = Path(str(import_module(name).__file__)).parent / "types"
        for path in root.rglob("*_param.py"):
            for match in pattern.finditer(path.read_text(encoding="utf-8")):
                found.update(re.findall(r'"([^"]+)"', match.group(1)))
    return found


def frozenset_source(name: str, values: set[str]) -> str:
    lines, line = [], "   "
    for value in sorted(values):
        item = f' "{value}",'
        if len(line) + len(item) > 92:
            lines.append(line)
            line = "   "
        line += item
    lines.append(line)
    body = "\n".join(lines)
    return f"{name} = frozenset({{\n{body}\n}})  # fmt: skip\n"


def main() -> None:
    sdks = ("openai", "anthropic")
    made_from = ", ".join(f"{name} {version(name)}" for name in sdks)
    kinds = literals("type", sdks) | SERVERS_KINDS
    print(f'''"""The kinds, states and roles the APIs define for what a request holds.

Written by ``tools/defined_kinds.py`` from the request types of {made_from}
(and vLLM's content parts); do not edit by hand.

A string under ``type``, ``status`` or ``role`` in a request is no text when
it is one of these: a server that checks the key takes no other value, and
one of these carries nothing a client chose. Any other value is judged as
text, since a server that does not check (TGI takes any tool call ``type``,
and writes a message of tool calls out as JSON) hands it to the template.
"""

from __future__ import annotations
''')
    print(frozenset_source("KINDS", kinds))
    print(frozenset_source("STATES", literals("status", sdks)))
    print(frozenset_source("ROLES", literals("role", sdks)), end="")


if __name__ == "__main__":
    main()
