"""The layout: proxy/'s folders import downwards only, in the order proxy/__init__.py states.

The order is read from the package's docstring, so the order written there
is the order enforced. Every import counts, wherever it is in a module and
under ``if TYPE_CHECKING:`` too: a type-only import is still a dependency a
reader follows. Within a folder any import goes, as long as it forms no circle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import proxy

PROXY = Path(proxy.__file__).parent
FILTERS = PROXY.parent / "filters"


def layers(doc: str) -> list[set[str]]:
    """The folders of each line of the docstring's order, top first (none: no order)."""
    if "::\n" not in doc:
        return []
    block = doc.split("::\n", 1)[1]
    out: list[set[str]] = []
    for line in block.splitlines():
        if not line.strip():
            if out:
                break
            continue
        if not line.startswith("    "):
            break
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        out.append({name.strip() for name in names.split(",")})
    return out


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(root: Path) -> dict[str, set[str]]:
    """Each module of the package at ``root`` and the modules of ``proxy`` it imports."""
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    known = set(paths)
    imports: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in node.names:
                    whole = f"{base}.{alias.name}"
                    found.add(whole if whole in known else base)
        imports[name] = {m for m in found if m == "proxy" or m.startswith("proxy.")}
    return imports


def folder(module: str) -> str:
    """A module's folder under proxy/ (a top-level module is a folder of its own)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "proxy"


def against_order(imports: Mapping[str, set[str]], order: list[set[str]]) -> list[str]:
    rank = {name: i for i, line in enumerate(order) for name in line}
    wrong = []
    for module, targets in sorted(imports.items()):
        for target in sorted(targets):
            here, there = folder(module), folder(target)
            if here == there:
                continue
            missing = [name for name in (here, there) if name not in rank]
            if missing:
                wrong.append(f"{module} imports {target}: {missing[0]} is in no line of the order")
            elif not rank[there] > rank[here]:
                wrong.append(f"{module} imports {target}: {there} is not below {here}")
    return wrong


def circles(imports: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Every circle of imports, each as the path that closes it."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(imports.get(module, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(imports):
        if module not in state:
            visit(module)
    return found


IMPORTS = read_imports(PROXY)
ORDER = layers(proxy.__doc__ or "")


def test_the_order_names_every_folder_once() -> None:
    named = [name for line in ORDER for name in line]
    folders = {folder(m) for m in IMPORTS} - {"proxy"}
    assert len(named) == len(set(named))
    assert set(named) == folders


def test_every_import_goes_down_the_order() -> None:
    assert against_order(IMPORTS, ORDER) == []


def test_no_module_imports_itself_in_a_circle() -> None:
    assert circles(IMPORTS) == []


def test_the_package_itself_imports_nothing() -> None:
    assert IMPORTS["proxy"] == set()


def test_the_filter_interface_imports_nothing_of_the_proxy() -> None:
    # filters.base is what plugins import: it must not pull the server in.
    assert {m: t for m, t in read_imports(FILTERS).items() if t} == {}


def test_an_import_upwards_or_sideways_is_found() -> None:
    order = [{"cli"}, {"a", "b"}, {"c"}]
    imports = {
        "proxy.cli": {"proxy.a.x"},
        "proxy.a.x": {"proxy.c.y", "proxy.a.z"},
        "proxy.b.w": {"proxy.a.x"},
        "proxy.c.y": {"proxy.a.z"},
    }
    assert against_order(imports, order) == [
        "proxy.b.w imports proxy.a.x: a is not below b",
        "proxy.c.y imports proxy.a.z: a is not below c",
    ]


def test_a_circle_is_found_with_its_path() -> None:
    imports = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert circles(imports) == [["p.a", "p.b", "p.c", "p.a"]]


def test_a_folder_the_order_does_not_name_is_found() -> None:
    imports = {"proxy.a.x": {"proxy.b.y"}}
    assert against_order(imports, [{"a"}]) == [
        "proxy.a.x imports proxy.b.y: b is in no line of the order"
    ]


def test_the_order_is_read_from_the_docstring() -> None:
    doc = "Title.\n\nOrder::\n\n    cli, __main__    the command line\n    a    what a is\n\nMore."
    assert layers(doc) == [{"cli", "__main__"}, {"a"}]
