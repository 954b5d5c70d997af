"""Scale-out helpers: the same training code on 1 process or N under ``torchrun`` (DDP).

``torchrun --nproc_per_node N -m compress ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in each process. :func:`init_distributed` reads them and
joins the process group (``gloo`` on CPU, ``nccl`` when CUDA is available); without them it does
nothing and every helper below degrades to its single-process meaning:

* :func:`wrap_ddp` wraps a model in ``DistributedDataParallel`` (gradients are averaged over the
  ranks during ``backward``), or returns it unchanged;
* :func:`shard` gives each rank its own slice of the data; :func:`distributed_sampler` does the
  same for a ``Dataset`` / ``DataLoader``;
* :func:`all_reduce_mean`, :func:`barrier`, :func:`is_main` (write files and logs only there);
* :func:`optimizer_step`: one guarded update (non-finite loss refused, clip, step), returning
  the rank-mean loss;
* :func:`batch_stream` turns a collection, an iterator or a callable into ``next_batch()``;
  :func:`window_mean` summarises a per-step loss curve (start / end of a run);
* :func:`train_loop` is a tiny generic loop (``loss_fn(model, batch) -> scalar``) that runs the
  same with 1 or N processes: with equal-sized shards, N ranks with per-rank batches of size b
  take the same steps as one process with batches of size N·b (up to float summation order).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from compress.errors import CompressError

log = logging.getLogger(__name__)

T = TypeVar("T")
Batch = Any
BatchSource = Iterable[Batch] | Callable[[], Batch]
BACKENDS = ("gloo", "nccl")
OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    backend: str  # "" when single-process
    device: torch.device


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError as exc:
        raise CompressError(f"environment {name}={v!r}: expected an integer") from exc


def is_distributed() -> bool:
    """True when a process group is initialised (and has more than one rank)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that writes files and logs."""
    return rank() == 0


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group described by the torchrun environment, if any.

    No-op (single process) when ``WORLD_SIZE`` is absent or 1. ``backend`` defaults to
    ``nccl`` when CUDA is available, else ``gloo``. Calling it twice is harmless.
    """
    world = _env_int("WORLD_SIZE")
    local = _env_int("LOCAL_RANK") or 0
    cuda = torch.cuda.is_available()
    if backend is not None and backend not in BACKENDS:
        raise CompressError(f"ddp backend={backend!r}; valid: {BACKENDS}")
    if backend == "nccl" and not cuda:
        raise CompressError("ddp backend 'nccl' needs CUDA, which is not available; use 'gloo'")
    if world is None or world <= 1:
        device = torch.device("cuda", local) if cuda else torch.device("cpu")
        return DistInfo(0, 1, 0, "", device)
    r = _env_int("RANK")
    if r is None:
        raise CompressError(f"WORLD_SIZE={world} is set but RANK is not; launch with torchrun")
    backend = backend or ("nccl" if cuda else "gloo")
    device = torch.device("cuda", local) if backend == "nccl" else torch.device("cpu")
    if not is_distributed():
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, init_method="env://", rank=r, world_size=world)
        log.info("joined process group: rank %d/%d (%s)", r, world, backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, backend, device)


def cleanup() -> None:
    """Leave the process group (no-op when not distributed)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over all ranks (a new tensor; `tensor` itself is unchanged)."""
    out = tensor.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def optimizer_step(
    loss: torch.Tensor,
    opt: torch.optim.Optimizer,
    params: list[nn.Parameter],
    *,
    grad_clip: float | None,
    what: str,
    step: int,
    lr: float,
    sched: Any = None,
) -> float:
    """One update: refuse a non-finite loss, backprop, clip, step (and `sched`); the loss's
    mean over the ranks."""
    import math

    value = float(loss.detach())
    if not math.isfinite(value):
        raise CompressError(
            f"{what}: loss became {value} at step {step}; lower the learning rate (lr={lr})"
        )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    if sched is not None:
        sched.step()
    return float(all_reduce_mean(loss.detach()))


def broadcast_object(obj: T, src: int = 0) -> T:
    """`obj` as it is on rank `src` (e.g. a config or seed chosen on the main rank)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def wrap_ddp(model: nn.Module, **kwargs: Any) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else `model` itself.

    The wrapper shares parameters with `model` (rank 0's values are broadcast on
    construction), so training through it updates `model` in place.
    """
    if not is_distributed() or isinstance(model, nn.parallel.DistributedDataParallel):
        return model
    if not any(p.requires_grad for p in model.parameters()):
        return model  # nothing to synchronise
    device_ids = None
    if dist.get_backend() == "nccl":
        device_ids = [torch.cuda.current_device()]
        model.to(torch.device("cuda", device_ids[0]))
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or `model` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def shard(items: Sequence[T] | int, drop_uneven: bool = True) -> list[T] | list[int]:
    """This rank's share of `items` (or of ``range(items)`` for an int), round-robin.

    With ``drop_uneven`` the tail that does not divide evenly is dropped, so every rank gets
    the same number of items (DDP needs every rank to take the same number of steps).
    """
    seq: Sequence[Any] = range(items) if isinstance(items, int) else items
    n, r = world_size(), rank()
    if drop_uneven:
        seq = seq[: (len(seq) // n) * n]
    if len(seq) < n:
        raise CompressError(f"shard: {len(seq)} items cannot be split over {n} ranks")
    return list(seq[r::n])


def distributed_sampler(dataset: Any, shuffle: bool = True, seed: int = 0) -> Any:
    """A ``DistributedSampler`` for `dataset` when distributed, else None (use the default)."""
    if not is_distributed():
        return None
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=True)


def batch_stream(batches: BatchSource) -> Callable[[], Batch]:
    """A ``next_batch()`` function over `batches`.

    ``batches`` is a zero-argument callable (called once per step), a re-iterable collection
    (a list, a DataLoader: cycled, re-iterated when exhausted) or a one-shot iterator (an error
    is raised when it runs dry, naming how many batches it gave).
    """
    if callable(batches) and not isinstance(batches, Iterable):
        return batches  # type: ignore[return-value]
    if not isinstance(batches, Iterable):
        raise CompressError(
            f"batches: got {type(batches).__name__}, expected an iterable of batches or a "
            "zero-argument callable returning a batch"
        )
    first = iter(batches)
    one_shot = first is batches
    state: dict[str, Any] = {"it": first, "n": 0}

    def next_batch() -> Batch:
        try:
            b = next(state["it"])
        except StopIteration:
            if one_shot or state["n"] == 0:
                raise CompressError(
                    f"batches ran out after {state['n']} batches; pass a re-iterable collection "
                    "or a callable that returns a new batch on every call"
                ) from None
            state["it"] = iter(batches)
            b = next(state["it"])
        state["n"] += 1
        return b

    return next_batch


def window_mean(values: Sequence[float], first: bool) -> float:
    """Mean of the first (``first=True``) or last tenth of `values` (at least one value): the
    ``loss_start`` / ``loss_end`` of a training record. NaN for an empty sequence."""
    if not values:
        return float("nan")
    k = max(1, len(values) // 10)
    part = values[:k] if first else values[-k:]
    return float(sum(part) / len(part))


def train_loop(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    batches: Any,
    steps: int,
    lr: float,
    optimizer: str = "adam",
    grad_clip: float | None = None,
) -> list[float]:
    """Train `model` in place for `steps` steps; return the per-step loss (mean over ranks).

    ``batches`` is this rank's data: a zero-argument callable, or a (re-iterable) collection —
    see :func:`batch_stream`. ``loss_fn(wrapped_model, batch)`` must call the
    model it is given (the DDP wrapper under torchrun) so that gradients are synchronised.
    """
    if steps < 1:
        raise CompressError(f"train_loop: steps must be >= 1, got {steps}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise CompressError("train_loop: the model has no trainable parameters")
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr)
    else:
        raise CompressError(f"train_loop: optimizer={optimizer!r}; valid: {OPTIMIZERS}")
    wrapped = wrap_ddp(model)
    wrapped.train()
    next_batch = batch_stream(batches)
    losses: list[float] = []
    for _ in range(steps):
        loss = loss_fn(wrapped, next_batch())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        losses.append(float(all_reduce_mean(loss.detach())))
    return losses
