"""What the service imports, it installs: every library a module of florent/ imports is a
declared dependency of the project, or one that a declared dependency installs."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_by(requirements: list[str]) -> set[str]:
    """The distributions these requirements install, their own requirements included."""
    names: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [Requirement(line) for line in requirements]
    while pending:
        requirement = pending.pop()
        key = (canonical(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        environments = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
        for line in importlib.metadata.requires(requirement.name) or []:
            nested = Requirement(line)
            if nested.marker is None or any(nested.marker.evaluate(e) for e in environments):
                pending.append(nested)
    return names


def imported_libraries() -> set[str]:
    """Top-level modules the service's code imports, not the standard library's."""
    names: set[str] = set()
    for path in [*(ROOT / "florent").rglob("*.py"), ROOT / "wsgi.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"florent"}


def test_every_library_the_service_imports_is_installed_by_its_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = installed_by(project["dependencies"])
    distributions = importlib.metadata.packages_distributions()

    missing = {
        module: sorted(distributions.get(module, ["(not installed)"]))
        for module in imported_libraries()
        if not {canonical(d) for d in distributions.get(module, [])} & installed
    }

    assert missing == {}
