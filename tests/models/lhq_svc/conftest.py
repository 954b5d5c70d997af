"""Fixtures for the LHQ-SVC tests: a tiny synthetic corpus and the unittest pipeline."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One torch thread: on this shared 2-core machine two OpenMP threads spin against the
    other jobs and run ~30x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def svc_corpus(tmp_path_factory):
    """2 singers x 2 short songs (one held out), rendered once per session."""
    from models.data.corpus import CorpusConfig, synthesize_corpus

    root = tmp_path_factory.mktemp("svc_corpus")
    synthesize_corpus(root, CorpusConfig(singers=2, minutes=0.1, seed=0, song_seconds=3.0),
                      progress=False)
    return root


@pytest.fixture
def tiny_pipeline():
    from models import registry

    torch.manual_seed(0)
    return registry.build("lhq-svc-unittest").eval()
