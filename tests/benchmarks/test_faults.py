"""benchmarks/faults.py's generators and outcome rules, on a quick sample of every audio,
config and checkpoint case through the loader, `compress validate` and `load_model` (the whole
campaign, with the commands and real processes, is the benchmark)."""

from __future__ import annotations

import random
from collections import Counter

import pytest


@pytest.fixture(scope="module")
def faults(load_benchmark):
    return load_benchmark("faults")


def test_every_audio_case_is_a_clean_error_or_handled_by_the_loader(faults, tmp_path) -> None:
    inputs = faults.audio_inputs(tmp_path / "audio", random.Random(0), 1)
    cases = Counter(i.case for i in inputs)
    assert len(cases) >= 20 and len(inputs) >= 50, cases
    outcomes: dict[str, Counter] = {}
    for inp in inputs:
        o, msg = faults._library_load(inp.path)
        assert o in ("clean_error", "handled"), (inp.case, inp.path, msg)
        outcomes.setdefault(inp.case, Counter())[o] += 1
    for case in ("empty", "header_only", "random_bytes", "directory"):
        assert set(outcomes[case]) == {"clean_error"}, (case, outcomes[case])
    for case in ("bit_depths", "channels_1_to_8", "dc_or_square"):
        assert set(outcomes[case]) == {"handled"}, (case, outcomes[case])
    # every rate from 1 kHz to 384 kHz loads (resampled to 16 kHz)
    assert outcomes["rates_1k_to_384k"]["handled"] == len(
        [i for i in inputs if i.case == "rates_1k_to_384k"])
    assert outcomes["declared_8_hours"] == Counter(clean_error=len(
        [i for i in inputs if i.case == "declared_8_hours"]))


def test_bad_configs_are_one_line_errors_naming_the_file(faults, tmp_path) -> None:
    inputs = faults.config_inputs(tmp_path / "config", random.Random(0), 1)
    seen = Counter()
    for inp in inputs:
        o, msg = faults._cli(["validate", inp.path], inp.path)
        assert o in ("clean_error", "handled"), (inp.case, msg)
        seen[(inp.case, o)] += 1
    for case in ("binary_garbage", "billion_laughs", "deep_nesting", "wrong_type",
                 "unknown_key", "out_of_range", "top_level_list", "not_utf8"):
        assert seen[(case, "handled")] == 0 and seen[(case, "clean_error")] > 0, case


def test_bad_checkpoints_are_clean_errors(faults, tmp_path) -> None:
    import torch

    from models import registry
    from models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    svc = registry.build("lhq-svc-unittest", speakers=["a", "b"])
    models = {"svc": str(save_checkpoint(tmp_path / "svc", svc, model_name="lhq-svc-unittest",
                                         config=svc.config, architecture=svc.architecture))}
    for key, name in (("sep", "cws-unet5-unittest"), ("sts", "sts-unittest")):
        models[key] = str(save_checkpoint(tmp_path / key, registry.build(name), model_name=name,
                                          config=registry.get(name).config()))
    # stand-ins for the programs (the campaign exports real ones): bytes that are not one
    models["pte"] = models["sep_pte"] = models["svc"]
    inputs = [i for i in faults.checkpoint_inputs(tmp_path / "ck", random.Random(0), 1, models)
              if i.kind == "checkpoint"]
    seen = Counter()
    for inp in inputs:
        faults._W.update(models=models, out=tmp_path)
        o, msg, _ = faults.run_case(faults.asdict(inp), "load_model")
        assert o in ("clean_error", "handled"), (inp.case, msg)
        seen[(inp.case, o)] += 1
    for case in ("ckpt_truncated", "pickle_renamed", "random_bytes", "empty", "newer_schema"):
        assert seen[(case, "handled")] == 0, (case, seen)


# ---- what the campaign found, fixed ---------------------------------------------------------
def test_random_bytes_are_refused_before_the_runtime_sees_them(tmp_path) -> None:
    """2 KB of random bytes named .pte kept the runtime from answering for 60 s."""
    from export.errors import ExportError
    from export.runtime import PteRunner, check_pte_bytes

    rnd = random.Random(0).randbytes(2048)
    with pytest.raises(ExportError, match="not an ExecuTorch program"):
        PteRunner(rnd)
    for bad in (b"", b"1234", b"\0" * 4 + b"ETxx", b"\0" * 4 + b"XT12"):
        with pytest.raises(ExportError):
            check_pte_bytes(bad)
    check_pte_bytes(b"\x3c\0\0\0ET12eh00")


def test_a_few_samples_and_too_many_channels_are_one_line_errors(faults, tmp_path) -> None:
    """A 29-sample file made `convert` raise from the mel front end's padding; a 3-channel
    file made `separate` say "separate input: has 3 channel(s)" without naming the file."""
    import numpy as np
    import soundfile as sf
    import torch

    from models import registry
    from models.checkpoint import save_checkpoint
    from models.errors import DataError
    from models.separation.infer import separate_file

    torch.manual_seed(0)
    svc = registry.build("lhq-svc-unittest", speakers=["singer00", "singer01"])
    ck = save_checkpoint(tmp_path / "svc", svc, model_name="lhq-svc-unittest",
                         config=svc.config, architecture=svc.architecture,
                         extra={"speakers": svc.speakers})
    short = tmp_path / "short.wav"
    sf.write(short, 0.3 * np.ones(29, np.float32), 16000)
    o, msg = faults._cli(["convert", "--model", str(ck), "--input", str(short), "--speaker",
                          "singer00", "--output", str(tmp_path / "o.wav")], str(short))
    assert o == "clean_error" and "29 samples (1.8 ms) of audio; convert needs at least 0.1 s" \
        in msg, msg
    assert not (tmp_path / "o.wav").exists()
    three = tmp_path / "three.wav"
    sf.write(three, 0.1 * np.ones((8000, 3), np.float32), 16000)
    with pytest.raises(DataError, match=f"{three}: has 3 channel"):
        separate_file(registry.build("cws-unet5-unittest").eval(), three, tmp_path / "stems")
    assert not (tmp_path / "stems").exists() or not any((tmp_path / "stems").iterdir())
