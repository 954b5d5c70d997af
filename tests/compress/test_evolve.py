"""Evolution loop on a toy evolvable model whose score and latency are known exactly."""

from __future__ import annotations

from typing import ClassVar

import pytest

from compress.errors import CompressError
from compress.evolve import evolve, replay


class Toy:
    """Blocks with a known usefulness; score = sum of usefulness with diminishing returns."""

    USE: ClassVar[dict[str, float]] = {"res": 1.0, "xattn": 3.0, "junk": 0.05}
    COST: ClassVar[dict[str, float]] = {"res": 2.0, "xattn": 5.0, "junk": 4.0}

    def __init__(self, arch):
        self.architecture = list(arch)

    def block_names(self):
        return [f"{k}{i}" for i, k in enumerate(self.architecture)]

    def remove_block(self, name):
        del self.architecture[self.block_names().index(name)]

    def duplicate_block(self, name):
        i = self.block_names().index(name)
        self.architecture.insert(i + 1, self.architecture[i])


def score(m: Toy) -> float:
    total = 0.0
    seen: dict[str, int] = {}
    for k in m.architecture:
        seen[k] = seen.get(k, 0) + 1
        total += Toy.USE[k] / seen[k]
    return total


def latency(arch) -> float:
    return 1.0 + sum(Toy.COST[k] for k in arch)


def test_removes_low_value_then_duplicates_high_value():
    m = Toy(["res", "junk", "xattn", "junk", "res"])  # 1 + 2 + 4 + 5 + 4 + 2 = 18 ms
    res = evolve(m, score_fn=score, latency_fn=latency, budget_ms=12.0, max_rounds=10)
    acts = [(h["action"], h["block"]) for h in res.history]
    # the two junk blocks go first (lowest score per ms), then budget is met (10 ms) and the
    # most valuable affordable duplication (xattn needs 5 ms: too much; res needs 2 ms) is taken
    assert acts[:2] == [("remove", "junk1"), ("remove", "junk2")]
    assert ("duplicate", "res0") in acts or ("duplicate", "res2") in acts
    assert res.met_budget and res.final_latency_ms <= 12.0
    # first junk removal: the second junk copy only adds 0.05 / 2 score, for 4 ms
    assert res.history[0]["value"] == pytest.approx(0.025 / 4.0)
    assert len(res.evaluated) > len(res.history)
    # replay on a fresh teacher gives the same architecture
    fresh = replay(Toy(["res", "junk", "xattn", "junk", "res"]), res.history)
    assert fresh.architecture == m.architecture
    with pytest.raises(CompressError, match="does not fit"):
        replay(Toy(["res"]), res.history)


def test_converges_when_nothing_fits():
    m = Toy(["xattn"])
    res = evolve(m, score_fn=score, latency_fn=latency, budget_ms=6.5, max_rounds=5)
    assert res.history == [] and res.converged and res.met_budget


def test_duplication_of_a_harmful_block_follows_the_paper_unless_gain_is_required():
    def penalise_copies(m: Toy) -> float:  # a second copy of anything lowers the score
        return score(m) - 2.0 * (len(m.architecture) - len(set(m.architecture)))

    res = evolve(Toy(["res"]), score_fn=penalise_copies, latency_fn=latency, budget_ms=5.5,
                 max_rounds=3)
    assert [(h["action"], h["block"]) for h in res.history] == [("duplicate", "res0")]
    assert res.history[0]["value"] == pytest.approx((0.5 - 2.0) / 2.0)
    assert res.final_latency_ms == pytest.approx(5.0) and res.converged
    strict = evolve(Toy(["res"]), score_fn=penalise_copies, latency_fn=latency, budget_ms=5.5,
                    max_rounds=3, require_gain=True)
    assert strict.history == [] and strict.converged


def test_swap_duplicates_then_removes_when_a_copy_alone_does_not_fit():
    # [junk, res]: 1 + 4 + 2 = 7 ms under a 7.5 ms budget; duplicating res (9 ms) does not fit,
    # but duplicating res and removing junk (5 ms) does, and scores higher
    m = Toy(["junk", "res"])
    res = evolve(m, score_fn=score, latency_fn=latency, budget_ms=7.5, max_rounds=3)
    acts = [(h["action"], h["block"], h.get("swap")) for h in res.history]
    assert acts[:2] == [("duplicate", "res1", True), ("remove", "junk0", True)]
    assert m.architecture[:2] == ["res", "res"] and res.met_budget
    assert res.history[1]["value"] == pytest.approx((score(Toy(["junk", "res", "res"]))
                                                     - 1.5) / 4.0)
    assert replay(Toy(["junk", "res"]), res.history).architecture == m.architecture
    plain = evolve(Toy(["junk", "res"]), score_fn=score, latency_fn=latency, budget_ms=7.5,
                   max_rounds=3, swap=False)
    assert plain.history == [] and plain.converged
