import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# nothing of hypothesis in the checkout (.hypothesis/: its example database, its caches): a fresh clone's suite
# leaves it as it was
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "notus-lab-hypothesis"))
settings.register_profile("suite", database=None)
settings.load_profile("suite")

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    # workers run side by side: each one's torch (and the runs it starts) gets its share of the cores
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory):
    """One tiny-model build for the whole session (all workers: the first to need it builds it under a lock,
    the others wait and use it), never the user's ~/.cache."""
    root = tmp_path_factory.getbasetemp()
    cache = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "notus_cache"
    if os.environ.get("NOTUS_LAB_TEST_CACHE"):  # a developer's cache kept between sessions (never ~/.cache)
        cache = Path(os.environ["NOTUS_LAB_TEST_CACHE"])
    cache.mkdir(exist_ok=True)
    os.environ["NOTUS_LAB_CACHE"] = str(cache)
    return cache
