"""Plugin tests run offline (no backbone downloads; tests that exercise the
download path mock it) and on one CPU thread (shared test machines)."""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("SDESIGN_OFFLINE", "1")
