"""The CLI: help with examples, `python -m compress`, models listing, validate exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from compress.cli import get_parser, main


def test_every_command_has_help_with_example(capsys):
    parser = get_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {"models", "validate", "data", "devices", "bench"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert p.epilog and "example:" in p.epilog and "compress" in p.epilog, name


def test_python_dash_m_compress_lists_models():
    out = subprocess.run(
        [sys.executable, "-m", "compress", "models", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(out.stdout)
    assert isinstance(rows, list)
    for r in rows:
        assert {"name", "params", "family"} <= set(r) and r["params"] > 0


def test_validate(tmp_path, capsys, monkeypatch):
    import torch

    from models import registry

    spec = registry.ModelSpec(
        name="cli-testonly",
        family="cli",
        factory=lambda width: torch.nn.Linear(width, width),
        defaults={"width": 2},
        inputs=lambda m: (torch.zeros(1, 2),),
        audio=registry.AudioMeta(sample_rate=16000),
    )
    registry.names()
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    from compress import recipes

    recipes.families()  # the built-in recipes first, then a stand-in for the test family
    monkeypatch.setitem(recipes._FACTORIES, "cli", lambda: None)
    good = tmp_path / "good.yaml"
    cfg = {"name": "x", "model": {"name": spec.name}, "evolve": {"budget_ms": 30.0}}
    good.write_text(yaml.safe_dump(cfg))
    assert main(["validate", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"steps": -1, "lr": "fast"}, "extra": 1}))
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "3 problems" in err
    assert "train.steps" in err and "train.lr" in err and "extra" in err


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2
