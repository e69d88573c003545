"""DESIGN.md §2's dependency direction, checked on every import of the program.

``cli → web → lab → daemon (api/) → server, client → net, store → delivery → e2e, noise → wire``:
a package may import a package of a LOWER rank only (never a peer, never one above), and the
top-level modules (``errors``, ``configfile``, ``clockfile``, ``filemodes``) sit below them all
(``__main__`` is the command line). ``cli`` ranks above ``web`` and ``lab`` because ``tidings
web`` and ``tidings lab`` are commands (and the web app's lab page runs the lab): neither
imports the command line. Imports under ``if TYPE_CHECKING:`` count too: a type-only arrow
upwards is still a layer that knows the one above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "tidings"

#: Each package's rank: it may import packages of a lower rank (and the top-level modules).
RANK = {
    "wire": 0,
    "noise": 1,
    "e2e": 1,
    "push": 1,  # Web Push encryption, VAPID, endpoint rules: for the relay and the device
    "delivery": 2,
    "store": 3,
    "net": 3,
    "server": 4,
    "client": 4,
    "api": 5,  # DESIGN's daemon/: the local API the daemon serves
    "lab": 6,
    "web": 7,  # its lab page runs the lab
    "cli": 8,  # `tidings web`, `tidings lab`: the commands start the others
}


def imported_packages(path: Path, root: Path = SRC) -> list[tuple[int, str]]:
    """(line, package) of every import of a ``tidings`` package in ``path``."""
    rel = path.relative_to(root).parts
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
            found += [(node.lineno, n[1]) for n in names if n[0] == "tidings" and len(n) > 1]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "tidings" and len(parts) > 1:
                    found.append((node.lineno, parts[1]))
                elif parts == ["tidings"]:
                    found += [(node.lineno, a.name) for a in node.names]
                continue
            base = list(rel[:-1])[: len(rel) - node.level]
            target = base + (node.module.split(".") if node.module else [])
            if target:
                found.append((node.lineno, target[0]))
            else:
                found += [(node.lineno, a.name) for a in node.names]
    return found


def violations(root: Path = SRC) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if len(rel) == 1:
            continue  # a top-level module: shared by all (checked below)
        me = rel[0]
        for line, package in imported_packages(path, root):
            if package == me or package not in RANK:
                continue
            if RANK[package] >= RANK[me]:
                bad.append(f"{'/'.join(rel)}:{line}: {me} imports {package}")
    for path in sorted(root.glob("*.py")):  # the shared modules import no package at all
        if path.name == "__main__.py":
            continue  # ``python -m tidings``: the command line itself
        bad += [
            f"{path.name}:{line}: a shared module imports {package}"
            for line, package in imported_packages(path, root)
            if package in RANK
        ]
    return bad


def test_the_check_sees_an_arrow_upwards(tmp_path: Path) -> None:
    (tmp_path / "wire").mkdir()
    (tmp_path / "lab").mkdir()
    (tmp_path / "wire" / "codec.py").write_text("from ..client import Client\n")
    (tmp_path / "lab" / "clock.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tidings.cli import x\n"
    )
    (tmp_path / "lab" / "ok.py").write_text(
        "from ..client.store import Direction\nfrom . import y\n"
    )
    (tmp_path / "errors.py").write_text("from .wire import limits\n")
    assert violations(tmp_path) == [
        "lab/clock.py:3: lab imports cli",
        "wire/codec.py:1: wire imports client",
        "errors.py:1: a shared module imports wire",
    ]


def test_every_import_follows_the_layers() -> None:
    assert {p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"} <= set(RANK)
    assert violations() == []
