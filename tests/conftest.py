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
