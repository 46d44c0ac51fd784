"""The shape of the core: no import circle, state fields changed only by their owners,
no class over 400 lines, and a map (docs/ARCHITECTURE.md) naming every module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent / "eventcore"
ROOT = PACKAGE.parent


def _modules() -> dict[str, Path]:
    """Every module of eventcore/, by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The eventcore modules *name* imports, ``TYPE_CHECKING`` and function-level
    imports included (a module, or the package whose name it imports from)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            for alias in node.names:
                full = f"{stem}.{alias.name}"
                targets.add(full if full in modules else stem)
    return {target for target in targets if target in modules and target != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of *graph*, or None."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in colour:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour:
            found = visit(node)
            if found:
                return found
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the eventcore modules it imports, packages' ``__init__`` excluded as
    targets of their own submodules (a package re-exporting its parts is no circle)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = _imports(name, path, modules)
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    return graph


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_counts_type_checking_imports() -> None:
    graph = import_graph()
    assert "eventcore._state" in graph["eventcore._slot"]
    # imported under `if TYPE_CHECKING:` only
    assert "eventcore.transports.redis.consume" in graph["eventcore.transports.redis.settle"]


def test_no_import_circle_in_the_core_type_checking_included() -> None:
    graph = {
        name: {t for t in targets if not t.startswith("eventcore.transports")}
        for name, targets in import_graph().items()
        if not name.startswith("eventcore.transports")
    }
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_other_import_circle_in_eventcore() -> None:
    graph = import_graph()  # the transports included (issue 20 removed their circle)
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


# -- state fields ----------------------------------------------------------------------

#: the classes of a type's state, by module: only their own methods assign their fields
STATE_CLASSES = {
    "eventcore._state": ("TypeState",),
    "eventcore._queue": ("TypeQueue",),
    "eventcore._gate": ("SlotGate",),
    "eventcore._counters": ("Counters",),
    "eventcore._plan": ("DeliveryPlan",),
}

#: (module, function, field): assignments the hot paths make inline, where a method
#: call per event costs more than the perf guard allows (figures: bench/PROFILE.md)
HOT_PATH_WRITES = {
    ("eventcore._publishing", "publish", "accepted"),
    ("eventcore._publishing", "publish_and_wait", "accepted"),
    ("eventcore._workers", "_serve", "handled"),
}


def _slots(cls: ast.ClassDef) -> set[str]:
    for node in cls.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            return {value} if isinstance(value, str) else set(value)
    raise AssertionError(f"{cls.name} has no __slots__")


def state_fields() -> dict[str, set[str]]:
    """Field -> the state classes that have it (``items``: the queue's deque, which
    the type's state also holds, for the hot paths)."""
    modules = _modules()
    owners: dict[str, set[str]] = {}
    for module, classes in STATE_CLASSES.items():
        tree = ast.parse(modules[module].read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in classes:
                for field in _slots(node):
                    owners.setdefault(field, set()).add(node.name)
    return owners


def _assignments(tree: ast.AST) -> Iterator[tuple[str | None, str | None, ast.Attribute]]:
    """(enclosing class, enclosing function, target) of every attribute assignment."""

    def walk(node: ast.AST, cls: str | None, func: str | None) -> Iterator[Any]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                yield from walk(child, child.name, None)
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield from walk(child, cls, child.name)
                continue
            targets: list[ast.expr] = []
            if isinstance(child, ast.Assign):
                targets = list(child.targets)
            elif isinstance(child, (ast.AugAssign, ast.AnnAssign)):
                targets = [child.target]
            elif isinstance(child, ast.Delete):
                targets = list(child.targets)
            for target in targets:
                for node_ in ast.walk(target):
                    if isinstance(node_, ast.Attribute) and isinstance(
                        node_.ctx, (ast.Store, ast.Del)
                    ):
                        yield cls, func, node_
            yield from walk(child, cls, func)

    yield from walk(tree, None, None)


def foreign_state_writes(source: str, module: str) -> list[str]:
    """Where *source* assigns a field of a state class outside that class's methods."""
    owners = state_fields()
    found = []
    for cls, func, target in _assignments(ast.parse(source)):
        owned_by = owners.get(target.attr)
        if owned_by is None:
            continue
        own = isinstance(target.value, ast.Name) and target.value.id == "self"
        if own and cls in owned_by:
            continue
        if own and cls not in {c for cs in STATE_CLASSES.values() for c in cs}:
            continue  # another class's own field of the same name
        if (module, func, target.attr) in HOT_PATH_WRITES:
            continue
        owner = "/".join(sorted(owned_by))
        found.append(f"{module}:{target.lineno} {func}() assigns {owner}.{target.attr}")
    return found


def test_only_the_state_classes_assign_their_fields() -> None:
    found = []
    for module, path in _modules().items():
        found += foreign_state_writes(path.read_text(), module)
    assert not found, "state fields assigned from outside:\n" + "\n".join(found)


def test_the_scan_catches_a_write_from_outside() -> None:
    source = "def serve(state):\n    state.gate.running += 1\n    state.items = []\n"
    assert foreign_state_writes(source, "eventcore._workers") == [
        "eventcore._workers:2 serve() assigns SlotGate.running",
        "eventcore._workers:3 serve() assigns TypeQueue/TypeState.items",
    ]
    inside = "class SlotGate:\n    def lend(self):\n        self.running -= 1\n"
    assert foreign_state_writes(inside, "eventcore._gate") == []
    wrong_self = "class TypeQueue:\n    def f(self):\n        self.running = 0\n"
    assert foreign_state_writes(wrong_self, "eventcore._queue") == [
        "eventcore._queue:3 f() assigns SlotGate.running"
    ]


# -- sizes -------------------------------------------------------------------------------


def class_sizes() -> dict[str, int]:
    """Lines of every class of the core (transports excluded), by qualified name."""
    sizes = {}
    for module, path in _modules().items():
        if module.startswith("eventcore.transports"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                sizes[f"{module}.{node.name}"] = node.end_lineno - node.lineno + 1
    return sizes


def test_no_class_of_the_core_over_400_lines() -> None:
    over = {name: size for name, size in class_sizes().items() if size > 400}
    assert not over, over


def test_the_dispatcher_has_no_eventcore_base_class() -> None:
    from eventcore import Dispatcher

    assert Dispatcher.__mro__ == (Dispatcher, object)


# -- the map ------------------------------------------------------------------------------

MAP = ROOT / "docs" / "ARCHITECTURE.md"


def map_layers() -> dict[str, int]:
    """Module (dotted) -> its layer, from the table of docs/ARCHITECTURE.md."""
    layers = {}
    for line in MAP.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`") and cells[1].isdigit():
            path = cells[0].strip("`")
            parts = ["eventcore", *Path(path).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            layers[".".join(parts)] = int(cells[1])
    return layers


def test_every_module_of_eventcore_has_its_row_in_the_map() -> None:
    missing = sorted(set(_modules()) - set(map_layers()))
    assert not missing, f"docs/ARCHITECTURE.md has no row for {missing}"
    gone = sorted(set(map_layers()) - set(_modules()))
    assert not gone, f"docs/ARCHITECTURE.md has rows for modules that do not exist: {gone}"


def test_no_module_imports_a_higher_layer() -> None:
    layers = map_layers()
    upward = [
        f"{name} (layer {layers[name]}) imports {target} (layer {layers[target]})"
        for name, targets in import_graph().items()
        for target in sorted(targets)
        if name in layers and target in layers and layers[target] > layers[name]
    ]
    assert not upward, "imports of a caller's layer:\n" + "\n".join(upward)
