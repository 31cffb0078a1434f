"""The library names no demo and carries no benchmark (those live in demo/ and bench/, outside the wheel), and no module outgrows one job."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from deploygate.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "deploygate"
DEMO_NAMES = re.compile(r"bmparliament|personlink|/api/links/", re.IGNORECASE)


def _library_files() -> list[Path]:
    return [p for p in LIBRARY.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]


def test_no_file_of_the_library_names_the_demo() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _library_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if DEMO_NAMES.search(line)
    ]
    assert not offenders, f"the demo's names belong in deploy.toml and demo/: {offenders}"


def test_the_library_never_imports_the_benchmarks() -> None:
    offenders = []
    for path in LIBRARY.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.split(".")[0] == "bench"]
    assert not offenders
    assert not [p.name for p in LIBRARY.glob("*.py") if p.stem.startswith("bench") or p.stem == "loadgen"]


def test_the_benchmarks_are_not_a_deploygate_command() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "predeploy"])


def test_neither_the_wheel_nor_the_sdist_ships_the_benchmarks_or_the_demo() -> None:
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]
    assert build["wheel"]["packages"] == ["deploygate"]
    assert not any(target.startswith(("bench", "demo")) for target in build["wheel"]["force-include"])
    assert not any(entry.strip("/").split("/")[0] in ("bench", "demo") for entry in build["sdist"]["include"])


# One concern per module: a module past this size has grown a second job (the house's rule, issue 21).
MAX_MODULE_LINES = 400


def test_no_library_module_is_over_the_size_limit() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in LIBRARY.rglob("*.py")}
    over = {path: lines for path, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not over, f"split these modules (over {MAX_MODULE_LINES} lines): {over}"
