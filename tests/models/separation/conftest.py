"""One torch thread for every separation test: the suite runs two pytest workers on two
cores, and the small models here are slower with two threads fighting over them."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
