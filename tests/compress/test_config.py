"""Config system: YAML <-> frozen dataclasses, every problem reported at once."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from compress.config import RunConfig
from compress.config_io import dump_yaml, from_dict, load_yaml, to_dict
from compress.errors import CompressError, ConfigError


@pytest.fixture
def model_name(monkeypatch):
    """A registered model for the config's model.name (independent of which families exist)."""
    import torch

    from models import registry

    spec = registry.ModelSpec(
        name="cfg-testonly",
        family="cfg",
        factory=lambda width: torch.nn.Linear(width, width),
        defaults={"width": 2},
        inputs=lambda m: (torch.zeros(1, 2),),
        audio=registry.AudioMeta(sample_rate=16000),
    )
    registry.names()  # load the real families first
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    from compress import recipes

    recipes.families()  # the built-in recipes first
    monkeypatch.setitem(recipes._FACTORIES, "cfg", lambda: None)
    return spec.name


def test_roundtrip_and_frozen(model_name):
    cfg = from_dict(
        RunConfig,
        {"name": "x", "model": {"name": model_name}, "latency": {"target": "host:threads=2"}},
    )
    assert cfg.latency.target == "host:threads=2" and cfg.data.sample_rate == 16000
    again = from_dict(RunConfig, yaml.safe_load(dump_yaml(cfg)))
    assert again == cfg
    assert to_dict(again) == to_dict(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "y"  # type: ignore[misc]


def test_all_problems_at_once(tmp_path):
    bad = {
        "model": {"name": "no-such-model"},
        "nmae": "typo",
        "data": {"source": "youtube", "singers": 1},
        "train": {"steps": "many", "lr": -1},
        "latency": {"target": "phone"},
        "distill": {"teacher_steps": 6},
        "export": {"formats": ["pte", "coreml"]},
        "bench": {"targets": ["host", "adb:"]},
    }
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError) as e:
        load_yaml(RunConfig, p)
    probs = {pr.path: pr for pr in e.value.problems}
    assert set(probs) - {"model.name"} == {
        "nmae",
        "data.source",
        "data.singers",
        "train.steps",
        "train.lr",
        "latency.target",
        "distill.teacher_steps",
        "export.formats[1]",
        "bench.targets[1]",
    }
    assert "name" in probs["nmae"].choices
    assert probs["data.source"].choices == ("synthetic", "folder")
    assert probs["data.singers"].given == 1 and "[2, 64]" in probs["data.singers"].expected
    assert "power of two" in probs["distill.teacher_steps"].expected
    assert "host:threads=N" in probs["latency.target"].choices
    assert str(p) in str(e.value)


def test_cross_field_and_files(tmp_path):
    with pytest.raises(ConfigError, match=r"data.path"):
        from_dict(RunConfig, {"data": {"source": "folder"}})
    with pytest.raises(ConfigError, match="an existing YAML file"):
        load_yaml(RunConfig, tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="valid YAML"):
        load_yaml(RunConfig, broken)
    with pytest.raises(ConfigError, match="a mapping"):
        from_dict(RunConfig, [1, 2])


@pytest.mark.parametrize("evolve, match", [
    ({"budget_ms": 20.0, "budget_fraction": 0.5}, "one budget"),
    ({"budget_ms": 20.0, "budget_rtf": 0.03}, "one budget"),
    ({"budget_ms": 0.0}, "a budget > 0"),
    ({"budget_rtf": 1.5}, "real-time factor < 1"),
    ({"budget_ms": 1500.0}, "slower than real time"),
    ({"budget_fraction": 1.5}, "budget_fraction"),
    ({"narrow_factor": 1.0}, "narrow_factor"),
    ({"params_fraction": 1.5}, "params_fraction"),
    ({"params_fraction": 0.0}, "params_fraction"),
])
def test_impossible_or_contradictory_budgets_are_config_errors(evolve, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(RunConfig, {"evolve": evolve})


def test_budget_forms_resolve_to_ms_per_audio_second():
    from compress.config import EvolveConfig, resolve_budget

    assert resolve_budget(EvolveConfig(budget_ms=25.0), 40.0, 1)["budget_ms"] == 25.0
    r = resolve_budget(EvolveConfig(budget_rtf=0.02), 40.0, 1)
    assert r["budget_ms"] == pytest.approx(20.0)
    # equal ms and rtf together are fine
    cfg = from_dict(RunConfig, {"evolve": {"budget_ms": 20.0, "budget_rtf": 0.02}})
    assert resolve_budget(cfg.evolve, 40.0, 1)["budget_ms"] == 20.0
    r = resolve_budget(EvolveConfig(budget_fraction=0.5), 40.0, 1)
    assert r["budget_ms"] == 20.0 and r["fraction_of_teacher"] == 0.5
    r = resolve_budget(EvolveConfig(), 40.0, 1)
    assert r["budget_ms"] == pytest.approx(22.0)  # default 0.55
    # the search aims latency_margin (default 3 %) under the budget
    assert r["search_ms"] == pytest.approx(22.0 * 0.97) and r["latency_margin"] == 0.03
    # the parameter budget: default 0.6 of the teacher's parameters, null for none
    assert resolve_budget(EvolveConfig(), 40.0, 3_000_000)["params_budget"] == 1_800_000
    assert resolve_budget(EvolveConfig(params_fraction=None), 40.0)["params_budget"] is None
    with pytest.raises(CompressError, match="parameter count"):
        resolve_budget(EvolveConfig(params_fraction=0.5), 40.0)


def test_a_model_without_a_recipe_is_rejected_by_validate(monkeypatch):
    from compress import recipes

    monkeypatch.setattr(recipes, "families", lambda: ["some-other-family"])
    with pytest.raises(ConfigError, match="has none"):
        from_dict(RunConfig, {"model": {"name": "lhq-svc-unittest"}})


def test_synthetic_song_plan_holds_the_held_out_songs() -> None:
    from compress.config import DataConfig, synthetic_song_plan

    # 3 min per singer in 15 s songs, 4 held out, 8 to train on
    assert synthetic_song_plan(3.0, 4) == (12, 15.0)
    # the demo (2 min, 2 held out): 8 songs of 15 s, as before the knob existed
    assert synthetic_song_plan(2.0, 2) == (8, 15.0)
    # short corpora get shorter songs (>= 3 s), always held_out + 1 of them at least
    n, secs = synthetic_song_plan(0.3, 4)
    assert n == 5 and secs == pytest.approx(3.6)
    assert synthetic_song_plan(0.2, 4) is None  # 12 s cannot hold 5 songs of 3 s
    probs = DataConfig(minutes=0.2, held_out_songs=4).problems("data")
    assert len(probs) == 1 and probs[0].path == "data.minutes"
    assert DataConfig(minutes=0.2, held_out_songs=2).problems("data") == []
    assert DataConfig(source="folder", path="x", minutes=0.01).problems("data") == []
