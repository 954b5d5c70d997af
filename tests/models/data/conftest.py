"""Shared fixtures for the data tests: one tiny synthetic corpus per session."""

from __future__ import annotations

import pathlib

import pytest

from models.data.corpus import CorpusConfig, synthesize_corpus

TINY = CorpusConfig(singers=3, minutes=0.3, seed=0, sample_rate=16000)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A 3-singer, 2-song corpus (seed 0, 16 kHz) written once per session. Do not modify it:
    copy it (``shutil.copytree``) before corrupting files."""
    root = tmp_path_factory.mktemp("tiny_corpus")
    synthesize_corpus(root, TINY, progress=False)
    return root
