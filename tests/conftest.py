import os

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory):
    """One tiny-model build for the whole session, never the user's ~/.cache."""
    cache = tmp_path_factory.mktemp("notus_cache")
    os.environ["NOTUS_LAB_CACHE"] = str(cache)
    return cache
