"""compress.ddp: 2 CPU ranks under torch.distributed.run agree and match one process."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from compress import ddp
from compress.errors import CompressError

# Each rank trains on its own half of a fixed data set (per-rank batch 16); one process trains
# on the whole set (batch 32). DDP averages gradients, so with SGD both take the same steps.
SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch
    from torch import nn

    from compress import ddp
    from compress.distill import distill_progressive

    out = Path(sys.argv[1])
    info = ddp.init_distributed()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    if ddp.is_main():
        torch.save(model.state_dict(), out / "initial.pt")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g)
    y = x.sum(dim=1, keepdim=True).sin()
    idx = ddp.shard(64)                       # this rank's rows
    per_rank = 32 // info.world_size          # global batch 32
    batches = [idx[i:i + per_rank] for i in range(0, len(idx), per_rank)]

    def loss_fn(m, rows):
        rows = torch.tensor(rows)
        return nn.functional.mse_loss(m(x[rows]), y[rows])

    losses = ddp.train_loop(model, loss_fn, batches, steps=6, lr=0.2, optimizer="sgd")

    # a distillation stage runs unchanged: each rank draws its own noise, DDP syncs the student
    class Den(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(4, 2)

        def forward(self, z, t, cond):
            return self.f(torch.cat([z, t[:, None], cond], 1))

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(10 + info.rank)   # rank-local data
    student, hist = distill_progressive(
        Den(), lambda: (torch.randn(8, 2, generator=g), torch.randn(8, 1, generator=g)),
        teacher_steps=2, steps_per_stage=4, lr=1e-2)
    torch.save({"state": model.state_dict(), "losses": losses, "world": info.world_size,
                "student": student.state_dict(), "distill": hist},
               out / f"rank{info.rank}_of{info.world_size}.pt")
    ddp.barrier()
    ddp.cleanup()
    """
)


def test_two_ranks_agree_and_match_single_process(  # type: ignore[no-untyped-def]
    tmp_path: Path, torchrun, clean_env
) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out2 = tmp_path / "two"
    out1 = tmp_path / "one"
    out2.mkdir()
    out1.mkdir()
    r = torchrun(script, out2, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    r1 = subprocess.run([sys.executable, str(script), str(out1)], env=clean_env,
                        capture_output=True, text=True, timeout=120)
    assert r1.returncode == 0, r1.stderr[-3000:]

    a = torch.load(out2 / "rank0_of2.pt")
    b = torch.load(out2 / "rank1_of2.pt")
    single = torch.load(out1 / "rank0_of1.pt")
    init = torch.load(out2 / "initial.pt")
    assert a["world"] == 2 and b["world"] == 2 and single["world"] == 1
    for k in init:
        assert torch.equal(a["state"][k], b["state"][k]), k
        assert torch.allclose(a["state"][k], single["state"][k], atol=1e-5), k
    moved = max(float((a["state"][k] - init[k]).abs().max()) for k in init)
    assert moved > 1e-3
    # the losses are averaged over ranks, identical on both, and equal the full-batch loss
    assert a["losses"] == b["losses"]
    assert a["losses"] == pytest.approx(single["losses"], rel=1e-4)
    assert a["losses"][-1] < a["losses"][0]
    # distillation under DDP: identical students, rank-averaged losses
    assert a["distill"][0]["to_steps"] == 1
    assert a["distill"][0]["loss_end"] == b["distill"][0]["loss_end"]
    for k in a["student"]:
        assert torch.equal(a["student"][k], b["student"][k]), k


def test_single_process_helpers_are_identity() -> None:
    info = ddp.init_distributed()
    assert (info.rank, info.world_size, info.backend) == (0, 1, "")
    assert ddp.is_main() and not ddp.is_distributed()
    m = torch.nn.Linear(2, 2)
    assert ddp.wrap_ddp(m) is m and ddp.unwrap(m) is m
    assert ddp.shard(5) == [0, 1, 2, 3, 4]
    t = torch.tensor([1.0, 3.0])
    assert torch.equal(ddp.all_reduce_mean(t), t)
    assert ddp.distributed_sampler(list(range(4))) is None


def test_bad_input_raises() -> None:
    m = torch.nn.Linear(2, 1)
    with pytest.raises(CompressError, match="optimizer"):
        ddp.train_loop(m, lambda mm, b: mm(b).sum(), [torch.ones(1, 2)], 1, 0.1, "lbfgs")
    with pytest.raises(CompressError, match="steps"):
        ddp.train_loop(m, lambda mm, b: mm(b).sum(), [torch.ones(1, 2)], 0, 0.1)
    with pytest.raises(CompressError, match="backend"):
        ddp.init_distributed("mpi")


def test_optimizer_step_refuses_a_non_finite_loss_and_leaves_weights() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1)
    params = list(lin.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    before = [p.detach().clone() for p in params]
    bad = lin(torch.ones(1, 3)).sum() * float("nan")
    with pytest.raises(CompressError, match=r"fine-tune: loss became nan at step 7; .*lr=0.1"):
        ddp.optimizer_step(bad, opt, params, grad_clip=1.0, what="fine-tune", step=7, lr=0.1)
    assert all(torch.equal(a, b) for a, b in zip(before, params))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 ** i)
    loss = (lin(torch.ones(1, 3)) - 4.0).pow(2).sum()
    value = ddp.optimizer_step(loss, opt, params, grad_clip=None, what="x", step=0, lr=0.1,
                               sched=sched)
    assert value == pytest.approx(float(loss.detach()))
    assert not all(torch.equal(a, b) for a, b in zip(before, params))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)  # the schedule stepped once


def test_ddp_does_not_import_distill(clean_env) -> None:  # type: ignore[no-untyped-def]
    """No import cycle: compress.ddp stands alone, compress.distill builds on it."""
    code = ("import sys, compress.ddp; assert 'compress.distill' not in sys.modules; "
            "import compress.distill as d; assert d.batch_stream is compress.ddp.batch_stream")
    r = subprocess.run([sys.executable, "-c", code], env=clean_env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    m = torch.nn.Linear(1, 1)
    losses = ddp.train_loop(m, lambda mm, b: (mm(b) - 1.0).pow(2).mean(),
                            iter([torch.ones(2, 1)] * 3), 3, 0.1)
    assert len(losses) == 3
    with pytest.raises(CompressError, match="ran out after 3 batches"):
        ddp.train_loop(m, lambda mm, b: mm(b).sum(), iter([torch.ones(2, 1)] * 3), 4, 0.1)


def test_window_mean() -> None:
    values = [float(i) for i in range(20)]  # a tenth is 2 values
    assert ddp.window_mean(values, first=True) == 0.5
    assert ddp.window_mean(values, first=False) == 18.5
    assert ddp.window_mean([3.0, 5.0], first=False) == 5.0  # at least one value
    assert math.isnan(ddp.window_mean([], first=True))
