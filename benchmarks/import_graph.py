"""The import graph of transfusion_cli measured against the layers in ``.importlinter``.

Counts, with grimp (the graph library import-linter uses), lazy imports inside functions
included:

- ``upward``: imports that break the layers contract (a module importing a higher layer, or
  an independent sibling in its own layer), as distinct package pairs (``compare -> reproduce``)
  and as module-level imports;
- ``cycles``: groups of top-level packages/modules that import each other directly or
  indirectly (strongly connected components), the pairs that import each other directly, and
  the imports grimp nominates to break cycles among the siblings of every package;
- ``undeclared``: top-level packages/modules that no layer names.

Run it on any checkout, e.g. an older commit read through ``git worktree add /tmp/before HEAD``::

    python benchmarks/import_graph.py                    # this checkout
    python benchmarks/import_graph.py --tree /tmp/before # another tree, same contract
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import json
import sys
from pathlib import Path

ROOT = "transfusion_cli"
REPO = Path(__file__).resolve().parents[1]


def read_layers(config: Path) -> list[tuple[list[str], bool]]:
    """The layers of the first layers contract, top to bottom: (package tails, independent)."""
    parser = configparser.ConfigParser()
    parser.read(config)
    for section in parser.sections():
        if parser[section].get("type") == "layers":
            layers = []
            for line in parser[section]["layers"].strip().splitlines():
                independent = ":" not in line
                parts = line.replace(":", "|").split("|")
                tails = [p.strip().strip("()").removeprefix(ROOT + ".") for p in parts]
                layers.append((tails, independent))
            return layers
    raise SystemExit(f"No layers contract in {config}.")


def build_graph(tree: Path):
    """grimp's import graph of the transfusion_cli package found in ``tree``."""
    import grimp

    sys.path.insert(0, str(tree))
    origin = Path(importlib.util.find_spec(ROOT).origin).resolve()
    if not origin.is_relative_to(tree.resolve()):
        raise SystemExit(f"{ROOT} resolves to {origin}, not inside {tree}.")
    return grimp.build_graph(ROOT, cache_dir=None)


def unit(module: str) -> str | None:
    """The top-level package or module of ``module`` (None for the root package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def strongly_connected(nodes: set[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one member."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(groups)


def measure(tree: Path, config: Path) -> dict:
    """Upward dependencies, cycles and undeclared packages of the tree against the contract."""
    layers = read_layers(config)
    layer_of = {tail: i for i, (tails, _) in enumerate(layers) for tail in tails}
    graph = build_graph(tree)
    upward_imports: list[str] = []
    upward_pairs: set[str] = set()
    unit_edges: dict[str, set[str]] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            a, b = unit(importer), unit(imported)
            if a is None or b is None or a == b:
                continue
            unit_edges.setdefault(a, set()).add(b)
            if a not in layer_of or b not in layer_of:
                continue
            la, lb = layer_of[a], layer_of[b]
            if lb < la or (lb == la and layers[la][1]):
                upward_imports.append(f"{importer} -> {imported}")
                upward_pairs.add(f"{a} -> {b}")
    units = {unit(m) for m in graph.modules} - {None}
    mutual = sorted(f"{a} <-> {b}" for a in unit_edges for b in unit_edges[a]
                    if a < b and a in unit_edges.get(b, ()))
    packages = sorted(m for m in graph.modules if graph.find_children(m))
    breakers = {p: sorted(f"{a} -> {b}" for a, b in graph.nominate_cycle_breakers(p))
                for p in packages}
    return {
        "tree": str(tree),
        "upward_dependencies": len(upward_pairs),
        "upward_dependency_pairs": sorted(upward_pairs),
        "upward_imports": upward_imports,
        "cycles": len(mutual),
        "mutually_importing_pairs": mutual,
        "cyclic_groups": strongly_connected(units, unit_edges),
        "sibling_cycle_breakers": {p: b for p, b in breakers.items() if b},
        "undeclared": sorted(units - set(layer_of)),
    }


def main() -> None:
    """Print the measurement as JSON, then a one-line summary on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=REPO, help="checkout to measure")
    parser.add_argument("--config", type=Path, default=REPO / ".importlinter",
                        help="import-linter configuration with the layers contract")
    args = parser.parse_args()
    result = measure(args.tree, args.config)
    print(json.dumps(result, indent=2))
    breakers = sum(len(b) for b in result["sibling_cycle_breakers"].values())
    print(f"{result['upward_dependencies']} upward dependencies "
          f"({len(result['upward_imports'])} imports), {result['cycles']} mutually importing "
          f"pairs, {len(result['cyclic_groups'])} cyclic groups, {breakers} cycle-breaking "
          f"imports among siblings, {len(result['undeclared'])} undeclared", file=sys.stderr)


if __name__ == "__main__":
    main()
