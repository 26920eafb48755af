"""Where conf/ is: beside the package in a checkout, inside it when installed (pyproject: package-dir)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
CONF_DIR = PACKAGE / "conf" if (PACKAGE / "conf" / "config.yaml").is_file() else PACKAGE.parent / "conf"
