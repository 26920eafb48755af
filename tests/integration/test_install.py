"""A non-editable install works outside the checkout: its configs and experiments ship inside the package."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def test_a_non_editable_install_binarizes_and_trains_from_another_directory(tmp_path):
    import shutil

    target, elsewhere, source = tmp_path / "site", tmp_path / "elsewhere", tmp_path / "source"
    elsewhere.mkdir()
    # install from a copy: the build leaves build/ and *.egg-info beside the sources, never in the checkout
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "outputs", "build", "*.egg-info", "__pycache__", "wandb", ".pytest_cache"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert (target / "notus_lab" / "conf" / "experiment" / "notus_7b_v1.yaml").is_file()
    env = {**__import__("os").environ, "PYTHONPATH": str(target)}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900
        )

    where = subprocess.run(
        [sys.executable, "-c", "import notus_lab.config.options as o; print(o.CONF_DIR)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.stdout.strip() == str(target / "notus_lab" / "conf"), where.stderr[-2000:]
    binarized = run("notus_lab.binarize", "data=critique", "data.world.rows=200")
    assert binarized.returncode == 0, binarized.stderr[-2000:]
    assert (elsewhere / "outputs" / "binarize" / "data.world.rows=200,data=critique" / "pairs.jsonl").is_file()
    trained = run(
        "notus_lab",
        "data.world.rows=300",
        "train.max_steps=2",
        "judge=none",
        "wandb.mode=disabled",
        "+experiment=critique_vs_rating",
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert list((elsewhere / "outputs").rglob("metrics.json"))
