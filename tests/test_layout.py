"""The package's house rules that a reader relies on: no module reaches into another's
private names (a leading underscore means "only this module uses it")."""

import ast
from pathlib import Path

import seglab

PACKAGE = Path(seglab.__file__).parent


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if not path.name.endswith("_test.py") and "testing" not in path.parts:
            yield path


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_cross_module_uses(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """``from seglab.x import _name`` and ``x._name`` (``x`` an imported seglab module) in
    ``path``, other than a package's ``__init__`` using its own modules."""
    this = _module_name(path, root)
    tree = ast.parse(path.read_text(), filename=str(path))
    found, imported_modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seglab"):
            for alias in node.names:
                if node.module == this:
                    continue
                if _private(alias.name) and not this.startswith(node.module + "."):
                    found.append(f"{path}:{node.lineno}: from {node.module} import {alias.name}")
                else:
                    imported_modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("seglab"):
                    imported_modules[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported_modules
        ):
            found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


# Uses still to remove; none may be added.
KNOWN: set[str] = set()


def test_no_module_uses_another_modules_private_names():
    found = [
        use
        for path in _modules()
        for use in private_cross_module_uses(path)
        if f"{path.relative_to(PACKAGE)}: {use.split(': ', 1)[1]}" not in KNOWN
    ]
    assert not found, "make these public or move them:\n" + "\n".join(found)


def test_the_scan_finds_both_forms(tmp_path):
    fake = tmp_path / "seglab" / "fake.py"
    fake.parent.mkdir()
    fake.write_text(
        "from seglab.training import _write_json, load_run\n"
        "import seglab.training as t\n"
        "t._read_config()\n"
        "t.load_run()\n"
    )
    found = private_cross_module_uses(fake, root=tmp_path)
    assert [use.split(": ", 1)[1] for use in found] == [
        "from seglab.training import _write_json",
        "t._read_config",
    ]
