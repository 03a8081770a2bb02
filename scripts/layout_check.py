"""Run ``lint-imports`` or ``mypy`` on this checkout as the installed ``edgemeta`` package.

Both tools find ``edgemeta`` by its folder, but here ``edgemeta.runtime``, ``edgemeta.lab``, ...
live in top-level folders mapped by ``[tool.setuptools.package-dir]`` (the editable install maps
them with an import hook neither tool runs), and from the repo root the bare ``edgemeta/`` (the
CLI) shadows any installed package. So this builds the installed layout in a temporary folder from
that same mapping (real folders, files linked to the checkout's), and runs the tool there with the
settings in pyproject.toml ([tool.importlinter], [tool.mypy]).

Usage: python scripts/layout_check.py lint-imports|mypy [extra options]. Exit status: the tool's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli, which mypy (in the dev extra) brings there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
TOOLS = {
    # lint-imports puts its working folder (the tree) first on sys.path.
    "lint-imports": ["--no-cache", "--no-logo", str(PYPROJECT)],
    "mypy": ["--config-file", str(PYPROJECT)],
}


def package_dirs(pyproject: Path = PYPROJECT) -> dict[str, Path]:
    """Dotted package name -> its folder in the checkout, from [tool.setuptools.package-dir]."""
    mapping = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-dir"]
    return {name: (pyproject.parent / folder).resolve() for name, folder in mapping.items()}


def link_tree(mapping: dict[str, Path], root: Path) -> None:
    """Under ``root``, the installed layout: real folders whose files link to the checkout's."""
    for name in sorted(mapping, key=lambda n: n.count(".")):  # parents before their subpackages
        _mirror(mapping[name], root.joinpath(*name.split(".")), mapping, name)


def _mirror(source: Path, target: Path, mapping: dict[str, Path], name: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name == "__pycache__" or f"{name}.{entry.name}" in mapping:
            continue
        if entry.is_dir():
            _mirror(entry, target / entry.name, mapping, f"{name}.{entry.name}")
        elif not (target / entry.name).exists():
            (target / entry.name).symlink_to(entry)


def find_tool(tool: str) -> str | None:
    """The tool's executable: beside this Python's (its virtual environment, activated or not), else on PATH."""
    return shutil.which(tool, path=str(Path(sys.executable).parent)) or shutil.which(tool)


def run_tool(tool: str, tree: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """``tool`` run in the link tree ``tree`` (made by ``link_tree``); its output captured as text."""
    exe = find_tool(tool)
    if exe is None or tool not in TOOLS:
        raise FileNotFoundError(f"{tool} not found (one of {sorted(TOOLS)}): pip install -e '.[dev]'")
    return subprocess.run([exe, *TOOLS[tool], *argv], cwd=tree, check=False, capture_output=True, text=True)


def checkout_paths(text: str, mapping: dict[str, Path]) -> str:
    """``text`` with the tree's file paths (``edgemeta/runtime/x.py``) as the checkout's (``runtime/x.py``)."""
    for name in sorted(mapping, key=len, reverse=True):
        text = text.replace(name.replace(".", "/") + "/", f"{mapping[name].relative_to(REPO)}/")
    return text


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    mapping = package_dirs()
    with tempfile.TemporaryDirectory(prefix="edgemeta-layout-") as tmp:
        link_tree(mapping, Path(tmp))
        try:
            res = run_tool(argv[0], Path(tmp), argv[1:])
        except FileNotFoundError as e:
            print(e, file=sys.stderr)
            return 2
    print(checkout_paths(res.stdout, mapping), end="")
    print(checkout_paths(res.stderr, mapping), end="", file=sys.stderr)
    return res.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
