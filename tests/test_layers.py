"""The layers of ``perkamo/`` point one way: each module imports only from its own layer or
those below it, and the program engine imports no I/O at all (like the test that keeps
``actors/`` generic, this keeps the tree readable as the architecture)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. The composition root (runtime) sits below the HTTP layer that serves it and
# above everything it wires together; operations (the CLI, the server) are on top.
# A module belongs to the layer of its longest matching prefix (the gateway, which routes a
# profile's commands here or over the cluster, sits above the cluster it uses).
LAYERS = [
    ("perkamo.errors", "perkamo.settings", "perkamo.ids", "perkamo.failures"),
    ("perkamo.program",),
    ("perkamo.configuration", "perkamo.webhooks"),
    ("perkamo.profiles", "perkamo.trials"),
    ("perkamo.access",),
    ("perkamo.cluster.membership", "perkamo.cluster", "perkamo.attempts"),
    ("perkamo.profiles.gateway", "perkamo.runtime"),
    ("perkamo.http", "perkamo.console", "perkamo.usecases"),
    ("perkamo.server", "perkamo.cli", "perkamo.__main__", "perkamo.__init__"),
]
PURE_ENGINE_MAY_NOT_IMPORT = ("storage", "actors", "trio", "psycopg", "httpx", "quart", "hypercorn")


def layer_of(module: str) -> int:
    matches = [
        (len(p), index)
        for index, prefixes in enumerate(LAYERS)
        for p in prefixes
        if module == p or module.startswith(p + ".")
    ]
    if matches:
        return max(matches)[1]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "perkamo").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts)] = path
    return found


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_every_import_points_down_the_layers():
    everything = modules()
    upward = []
    for module, path in everything.items():
        own = layer_of(module)
        for target in imports_of(path):
            if target.split(".")[0] != "perkamo" or target == "perkamo":
                continue
            if target not in everything and target.rpartition(".")[0] in everything:
                target = target.rpartition(".")[0]  # "from pkg.mod import name"
            if target in everything and layer_of(target) > own:
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_the_program_engine_does_no_io():
    for module, path in modules().items():
        if module.startswith("perkamo.program"):
            for target in imports_of(path):
                assert target.split(".")[0] not in PURE_ENGINE_MAY_NOT_IMPORT, (module, target)


def test_the_relative_order_has_a_reason_for_each_layer():
    assert len({p for layer in LAYERS for p in layer}) == sum(len(layer) for layer in LAYERS)
