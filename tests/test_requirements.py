"""Every third-party import of the project is declared, so a fresh virtual environment built from the
requirements files runs it (.ci/run builds one; a missing declaration fails there)."""
import ast
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"model", "study", "demo", "bench", "deploy", "tests", "app"}


def imported_modules(paths):
    """Top-level names of the absolute imports in the given .py files, minus the standard library
    and the project's own packages."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - FIRST_PARTY


def normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(requirements):
    """Distribution names (normalised) in a requirements file, following -r includes."""
    names = set()
    for line in (ROOT / requirements).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= declared(line[3:].strip())
        elif line:
            names.add(normalise(re.split(r"[\[=<>~! ]", line)[0]))
    return names


def undeclared(modules, allowed):
    """{module: why} for the modules whose distribution is not among `allowed`."""
    providers = importlib.metadata.packages_distributions()
    problems = {}
    for module in sorted(modules):
        dists = {normalise(d) for d in providers.get(module, [])}
        if not dists:
            problems[module] = "imported, but no installed distribution provides it"
        elif not dists & allowed:
            problems[module] = f"provided by {', '.join(sorted(dists))}, which no requirements file declares"
    return problems


def project_files(*parts):
    return [p for part in parts for p in ((ROOT / part).rglob("*.py") if (ROOT / part).is_dir() else [ROOT / part])]


def test_every_runtime_import_is_declared_in_requirements_txt():
    modules = imported_modules(project_files("model", "study", "demo", "bench", "deploy", "app.py"))
    assert {"torch", "gradio", "sqlalchemy", "pandas", "scipy", "PIL"} <= modules  # the scan sees the code
    assert undeclared(modules, declared("requirements.txt")) == {}


def test_every_test_import_is_declared_in_requirements_dev_txt():
    modules = imported_modules(project_files("tests"))
    assert {"pytest", "playwright"} <= modules
    assert undeclared(modules, declared("requirements-dev.txt")) == {}


def test_requirements_are_pinned():
    for requirements in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / requirements).read_text().splitlines():
            line = line.split("#")[0].strip()
            assert not line or line.startswith("-r ") or "==" in line, f"{requirements}: {line!r} is not pinned"


def test_a_missing_declaration_is_reported(tmp_path):
    source = tmp_path / "uses.py"
    source.write_text("import scipy.stats\nfrom PIL import Image\nimport json\nfrom . import sibling\n")
    modules = imported_modules([source])
    assert modules == {"scipy", "PIL"}
    assert set(undeclared(modules, {"pillow"})) == {"scipy"}
