"""Shared test fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_data_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never touch ~/.cache/seqrec and never download: a private cache, offline mode."""
    saved = {k: os.environ.get(k) for k in ("SEQREC_CACHE_DIR", "SEQREC_OFFLINE")}
    os.environ["SEQREC_CACHE_DIR"] = str(tmp_path_factory.mktemp("seqrec-cache"))
    os.environ["SEQREC_OFFLINE"] = "1"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def data_dir_or_skip() -> str:
    """The real datasets folder from SEQREC_DATA_DIR, or skip the test saying why."""
    path = os.environ.get("SEQREC_DATA_DIR")
    if not path or not os.path.isdir(path):
        pytest.skip(
            "real-data test: set SEQREC_DATA_DIR to the datasets folder (e.g. ../shared/data)"
        )
    return path


@pytest.fixture
def real_data_dir() -> str:
    return data_dir_or_skip()
