"""The notebooks' install cell, as Colab runs it: what it asks pip for, and what pip would do.

Colab comes with TensorFlow (and tf-keras, keras, jax) installed. The cell must install only
what the course needs (no ``[dev]`` tools) and never replace that TensorFlow: keras-hub needs
tensorflow-text, which requires exactly one TensorFlow minor version, so without care pip
upgrades TensorFlow to fit the newest tensorflow-text. The cell pins the installed TensorFlow,
which makes pip choose the tensorflow-text (and keras-hub) that fit it instead.

Offline by design: pip resolves with ``--no-index`` against this environment (which has
TensorFlow), and the dependency closure is read from the installed packages' metadata.
"""

import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from seglab import course

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# What a learner's environment already has and the cell must leave alone.
PROTECTED = ("tensorflow", "tf-keras", "keras", "tensorflow-text", "jax", "jaxlib")
# The course's development tools: never installed by the cell.
DEV_TOOLS = ("pytest", "ruff", "jupyterlab", "jax", "nbmake", "papermill", "pytest-xdist")


def _run_cell_in_ipython(cell: str, in_colab: bool, monkeypatch) -> list[str]:
    """Run ``cell`` in a real IPython shell whose ``%pip`` only records its (expanded) line."""
    from IPython.core.interactiveshell import InteractiveShell

    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    shell = InteractiveShell.instance()
    recorded = []
    shell.register_magic_function(recorded.append, "line", "pip")
    try:
        result = shell.run_cell(cell)
    finally:
        InteractiveShell.clear_instance()
    result.raise_error()
    return recorded


def _pip_requirements(line: str) -> list[str]:
    words = shlex.split(line)
    assert words[0] == "install", line
    return [word for word in words[1:] if not word.startswith("-")]


def _base_dependencies() -> list[str]:
    with open(REPO_ROOT / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    return project["dependencies"], project.get("optional-dependencies", {})


def _requirements_of_cell(monkeypatch) -> list[str]:
    """The cell's requirements, with seglab's own replaced by the dependencies it declares
    (those of this checkout, with the extras the cell asks for)."""
    (line,) = _run_cell_in_ipython(course.INSTALL_CELL, True, monkeypatch)
    dependencies, optional = _base_dependencies()
    requirements = []
    for text in _pip_requirements(line):
        requirement = Requirement(text)
        if requirement.name == "seglab":
            requirements += dependencies
            for extra in sorted(requirement.extras):
                requirements += optional[extra]
        else:
            requirements.append(text)
    return requirements


def _dry_run(requirements: list[str], tmp_path) -> tuple[int, str, list[str]]:
    """``pip install --dry-run --no-index`` in this environment: (exit code, output, the names
    pip would install or replace)."""
    report = tmp_path / "report.json"
    env = {
        **os.environ,
        "PIP_CONFIG_FILE": os.devnull,  # no index or find-links from a user's pip.conf
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }
    process = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--quiet"]
        + ["--report", str(report), *requirements],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    installs = []
    if process.returncode == 0:
        installs = [
            canonicalize_name(item["metadata"]["name"])
            for item in json.loads(report.read_text())["install"]
        ]
    return process.returncode, process.stdout + process.stderr, installs


def _closure(requirements: list[str]) -> dict[str, str]:
    """Every distribution the requirements pull in, transitively, from the installed
    packages' metadata: ``{name: the requirement that first pulled it}``."""
    found: dict[str, str] = {}
    pending = [(Requirement(text), "seglab") for text in requirements]
    while pending:
        requirement, parent = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found[name] = f"{parent} -> {requirement}"
        try:
            declared = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: its own dependencies are unknown
        extras = {""} | set(requirement.extras)
        for text in declared:
            child = Requirement(text)
            if child.marker is None or any(
                child.marker.evaluate({"extra": extra}) for extra in extras
            ):
                pending.append((child, name))
    return found


def test_outside_colab_the_cell_does_nothing(monkeypatch):
    assert _run_cell_in_ipython(course.INSTALL_CELL, False, monkeypatch) == []


def test_in_colab_the_cell_installs_seglab_and_pins_the_installed_tensorflow(monkeypatch):
    (line,) = _run_cell_in_ipython(course.INSTALL_CELL, True, monkeypatch)
    installed = importlib.metadata.version("tensorflow")
    assert _pip_requirements(line) == [
        f"seglab @ git+{course.REPOSITORY}",
        f"tensorflow=={installed}",
    ]
    assert Requirement(_pip_requirements(line)[0]).extras == set()  # no [dev]


def test_pip_keeps_the_installed_tensorflow(monkeypatch, tmp_path):
    requirements = _requirements_of_cell(monkeypatch)
    code, output, installs = _dry_run(requirements, tmp_path)
    assert code == 0, f"pip cannot satisfy {requirements} with what is installed:\n{output}"
    replaced = sorted(set(installs) & set(PROTECTED))
    assert not replaced, f"pip would install or replace {replaced}"


def test_the_dry_run_sees_a_tensorflow_change(tmp_path):
    # The check above can fail: a requirement that only another TensorFlow satisfies.
    installed = importlib.metadata.version("tensorflow")
    code, output, _ = _dry_run([f"tensorflow!={installed}"], tmp_path)
    assert code != 0
    assert "tensorflow" in output.lower()


def test_the_cell_pulls_in_no_development_tools(monkeypatch):
    pulled = _closure(_requirements_of_cell(monkeypatch))
    assert "tensorflow" in pulled and "keras-hub" in pulled  # the closure is really read
    dev = {name: pulled[name] for name in DEV_TOOLS if name in pulled}
    assert not dev, f"the install cell would install development tools: {dev}"


def test_the_dev_extra_would_be_caught():
    dependencies, optional = _base_dependencies()
    pulled = _closure(dependencies + optional["dev"])
    assert {"pytest", "ruff"} <= set(pulled)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_each_notebook_starts_with_the_install_cell(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    first_code = next(cell for cell in cells if cell["cell_type"] == "code")
    source = "".join(first_code["source"])
    assert source.strip() == course.INSTALL_CELL.strip(), (
        f"{notebook.name}: the first code cell must be seglab.course.INSTALL_CELL:\n"
        f"{course.INSTALL_CELL}"
    )


def test_readme_colab_links_point_at_the_repository():
    readme = (REPO_ROOT / "README.md").read_text()
    owner_and_name = course.REPOSITORY.removeprefix("https://github.com/")
    links = re.findall(r"colab\.research\.google\.com/github/([^/]+/[^/]+)/", readme)
    assert links, "README.md has no Colab links"
    assert set(links) == {owner_and_name}
    for git_url in re.findall(r"git\+(https://github\.com/[^\s\"')]+)", readme):
        assert git_url.removesuffix(".git") == course.REPOSITORY
