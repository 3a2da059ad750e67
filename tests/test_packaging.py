"""Packaging contract: environment.yml and pyproject.toml agree; lower bounds only; CI runs the README's command.

environment.yml is read with a small line parser (no PyYAML dependency): it only needs the
``dependencies:`` list and its nested ``- pip:`` list.
"""
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

# conda-forge name -> PyPI name, where they differ.
CONDA_TO_PIP = {"pytorch": "torch"}
# Entries of environment.yml that are not packages of pyproject.toml.
NOT_DEPENDENCIES = {"python", "pip"}

REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def normalise(name: str) -> str:
    """PEP 503 name normalisation: case and runs of -_. do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(spec: str) -> tuple[str, str | None]:
    """``'torch>=2.2'`` -> ``('torch', '2.2')``; no lower bound -> ``None``."""
    spec = spec.split(";")[0].split("#")[0].strip()
    m = REQ.match(spec)
    assert m, f"cannot parse requirement {spec!r}"
    name, rest = m.groups()
    lower = None
    for clause in filter(None, (c.strip() for c in rest.split(","))):
        if clause.startswith(">="):
            lower = clause[2:].strip()
    return normalise(name), lower


def environment_yml_specs(text: str) -> list[str]:
    """The package specs under ``dependencies:``, including those of the nested ``- pip:`` list."""
    specs, in_deps = [], False
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if not line[0].isspace():  # a top-level key
            in_deps = line.startswith("dependencies:")
            continue
        if not in_deps:
            continue
        item = line.strip()
        if not item.startswith("- "):
            continue
        item = item[2:].strip().strip("'\"")
        if item.endswith(":"):  # "- pip:" opens the nested list
            continue
        if item.startswith("-"):  # pip options such as "-e ." or "-r file"
            continue
        specs.append(item)
    return specs


def conda_spec(spec: str) -> tuple[str, str | None]:
    """conda specs: ``pytorch>=2.2``, ``conda-forge::pytorch >=2.2``, ``numpy=1.26`` (exact, flagged)."""
    spec = spec.split("::")[-1]
    assert not re.search(r"(?<![<>=!])=(?!=)|==", spec), f"environment.yml pins {spec!r}: use >= lower bounds"
    name, lower = parse_requirement(spec)
    return normalise(CONDA_TO_PIP.get(name, name)), lower


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pyproject_deps(pyproject):
    proj = pyproject["project"]
    specs = list(proj["dependencies"])
    for extra in proj.get("optional-dependencies", {}).values():
        specs += extra
    return specs


@pytest.fixture(scope="module")
def env_specs():
    return environment_yml_specs((ROOT / "environment.yml").read_text(encoding="utf-8"))


def test_parser_reads_nested_pip_list():
    text = "name: x\nchannels:\n  - conda-forge\ndependencies:\n  - python>=3.10\n  - pytorch>=2.2  # cpu or cuda\n" \
           "  - pip\n  - pip:\n      - nbval>=0.11\n      - -e .\nvariables:\n  - FOO\n"
    assert environment_yml_specs(text) == ["python>=3.10", "pytorch>=2.2", "pip", "nbval>=0.11"]
    assert conda_spec("conda-forge::pytorch >=2.2") == ("torch", "2.2")
    assert parse_requirement("Pillow>=9.5") == ("pillow", "9.5")
    assert parse_requirement("foo[bar]>=1.0,<3") == ("foo", "1.0")


def test_environment_and_pyproject_list_the_same_packages(pyproject_deps, env_specs):
    pip = dict(parse_requirement(s) for s in pyproject_deps)
    conda = dict(conda_spec(s) for s in env_specs)
    for name in NOT_DEPENDENCIES:
        conda.pop(name, None)
    only_pyproject = sorted(set(pip) - set(conda))
    only_env = sorted(set(conda) - set(pip))
    assert not only_pyproject and not only_env, (
        f"only in pyproject.toml: {only_pyproject}; only in environment.yml: {only_env} "
        f"(conda names are mapped with {CONDA_TO_PIP})"
    )
    differ = {n: (pip[n], conda[n]) for n in pip if pip[n] != conda[n]}
    assert not differ, f"lower bounds differ (pyproject, environment.yml): {differ}"


def test_every_dependency_has_a_lower_bound_and_no_pin(pyproject_deps):
    for spec in pyproject_deps:
        assert "==" not in spec and "~=" not in spec, f"pyproject.toml pins {spec!r}: use >= lower bounds"
        assert parse_requirement(spec)[1] is not None, f"{spec!r} has no >= lower bound"


def test_python_versions_agree(pyproject, env_specs):
    requires = pyproject["project"]["requires-python"]
    assert requires.replace(" ", "") == ">=3.10"
    conda_python = [s for s in env_specs if parse_requirement(s)[0] == "python"]
    assert conda_python and parse_requirement(conda_python[0])[1] == "3.10"


def test_environment_installs_the_package_itself():
    text = (ROOT / "environment.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s*-\s*-e\s+\.\s*$", text, flags=re.M), "environment.yml should pip install -e ."


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in readme
    assert re.search(r"^\s*make test\b", ci, flags=re.M), ".ci/run must run `make test`"


def test_makefile_targets_exist():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("reproduce", "test", "lab", "sync", "execute", "bench", "clean"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"Makefile has no {target!r} target"
    recipe_lines = [l for l in makefile.splitlines() if l.startswith("    ") and not l.lstrip().startswith("#")]
    assert not recipe_lines, "Makefile recipes must be indented with tabs"
