"""The install ships every subpackage and the configs (a non-editable install is exercised end to end in
tests/integration/test_install.py)."""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_the_declared_packages_are_the_package_folders_and_the_configs():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("notus_lab", "hydra_plugins")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert set(declared) == folders | {"notus_lab.conf"}
    assert not (ROOT / "hydra_plugins" / "__init__.py").exists()  # a namespace package, shared with Hydra's plugins
