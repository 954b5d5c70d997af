"""Step distillation: progressive (diffusion decoder) and output distillation (other parts).

**Progressive distillation** (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of
Diffusion Models", Algorithm 2; LHQ-SVC §III.B, Fig. 1). A teacher sampled with N DDIM steps is
distilled into a student that takes N/2 steps, which then teaches a student with N/4 steps, …,
down to one step. Each student starts as a copy of its teacher. For a training example x with
conditioning c, at a time t = i / N_s on the student's grid (i ∈ 1..N_s), with
s = t - 1/N_s and the midpoint t' = t - 0.5/N_s:

    z_t  = α_t x + σ_t ε
    z_t' = DDIM_teacher(z_t, t → t'),   z_s = DDIM_teacher(z_t', t' → s)      (two teacher steps)
    x̃    = (z_s - (σ_s/σ_t) z_t) / (α_s - (σ_s/σ_t) α_t)                      (Alg. 2, target)
    L    = w(λ_t) ||x̂_student(z_t) - x̃||²,   w = max(SNR, 1)  ("truncated SNR", §4 of the paper)

so that one student DDIM step (eq. 10 of LHQ-SVC, :func:`models.lhq_svc.diffusion.ddim_step`)
from z_t with x̂ = x̃ lands exactly on the teacher's z_s.

Endpoints. The cosine schedule is clipped to λ ∈ [-20, 20], so α_1 ≈ 4.5e-5 > 0 and σ_0 ≈ 4.5e-5:
the target formula stays finite at t = 1 (its denominator σ_s(α_s/σ_s - α_t/σ_t) is > 0 because
the SNR decreases in t). At s = 0 the sampler (:func:`models.lhq_svc.diffusion.sample`) does not
take a DDIM step but returns x̂ itself, so there the target is the teacher's x̂ at t' — the value
its 2-step sampler returns — which the 1-step student then reproduces exactly.

The denoiser is any ``nn.Module`` called as ``model(z_t, t, cond) -> prediction`` (``cond`` may
be ``None``, then ``model(z_t, t)``); x- and v-prediction are both supported through
:func:`models.lhq_svc.diffusion.predict_x`. Training runs unchanged under ``torchrun`` (the
student is wrapped by :func:`compress.ddp.wrap_ddp`; each rank draws its own batches).

**Output distillation** (:func:`output_distill`) is for the non-diffusion parts of the pipeline
(content encoder, vocoder) when a config shrinks them: the student regresses the teacher's outputs
(MSE, L1, or L1 between log-mel spectrograms of waveform outputs).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from compress import ddp
from compress.errors import CompressError
from models.lhq_svc import diffusion

log = logging.getLogger(__name__)

Batch = Any
BatchSource = Iterable[Batch] | Callable[[], Batch]
OUTPUT_LOSSES = ("mse", "l1", "logmel_l1")


# ---- batches --------------------------------------------------------------------------------
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


def _split(batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(x0, cond)`` of a diffusion batch (``cond`` may be None or absent)."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, Sequence) and len(batch) in (1, 2):
        x0 = batch[0]
        cond = batch[1] if len(batch) == 2 else None
        if isinstance(x0, torch.Tensor) and (cond is None or isinstance(cond, torch.Tensor)):
            return x0, cond
    raise CompressError(
        f"distillation batch: got {type(batch).__name__}, expected (x0 (B, 80, F), "
        "cond (B, 256, F)) tensors, or x0 alone"
    )


def _call(model: nn.Module, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None):
    return model(z, t) if cond is None else model(z, t, cond)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def _coef(t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """α_t, σ_t in float64, shaped to broadcast against `like` (B, ...)."""
    a, s = diffusion.alpha_sigma(t.to(torch.float64))
    return _bcast(a, like), _bcast(s, like)


def _ddim(z: torch.Tensor, x_hat: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Per-example DDIM step t → s (eq. 10), computed in float64."""
    a_t, s_t = _coef(t, z)
    a_s, s_s = _coef(s, z)
    z64, x64 = z.to(torch.float64), x_hat.to(torch.float64)
    return a_s * x64 + s_s * (z64 - a_t * x64) / s_t


# ---- progressive distillation ----------------------------------------------------------------
@torch.no_grad()
def distill_target(
    teacher: nn.Module,
    z_t: torch.Tensor,
    t: torch.Tensor,
    student_steps: int,
    cond: torch.Tensor | None = None,
    prediction: str = "x",
) -> torch.Tensor:
    """The student's x-target x̃ at `z_t` (Algorithm 2): two teacher DDIM steps t → t' → s.

    ``t`` (B,) must lie on the student's grid ``i / student_steps``; ``s = t - 1/student_steps``.
    Where ``s`` is 0 the target is the teacher's x̂ at the midpoint (the sampler's last step
    returns x̂; see the module docstring).
    """
    if student_steps < 1:
        raise CompressError(f"student_steps must be >= 1, got {student_steps}")
    h = 1.0 / student_steps
    t = t.to(z_t.dtype)
    t_mid = (t - 0.5 * h).clamp(min=0.0)
    s = (t - h).clamp(min=0.0)
    x1 = diffusion.predict_x(_call(teacher, z_t, t, cond), z_t, t, prediction)
    z_mid = _ddim(z_t, x1, t, t_mid).to(z_t.dtype)
    x2 = diffusion.predict_x(_call(teacher, z_mid, t_mid, cond), z_mid, t_mid, prediction)
    z_s = _ddim(z_mid, x2, t_mid, s)
    a_t, s_t = _coef(t, z_t)
    a_s, s_s = _coef(s, z_t)
    ratio = s_s / s_t
    x_tilde = (z_s - ratio * z_t.to(torch.float64)) / (a_s - ratio * a_t)
    last = _bcast(s <= 1e-6, z_t)
    return torch.where(last, x2.to(torch.float64), x_tilde).to(z_t.dtype)


def _window_mean(values: list[float], first: bool) -> float:
    if not values:
        return float("nan")
    k = max(1, len(values) // 10)
    part = values[:k] if first else values[-k:]
    return float(sum(part) / len(part))


def distill_stage(
    teacher: nn.Module,
    next_batch: Callable[[], Batch],
    student_steps: int,
    steps: int,
    lr: float,
    prediction: str = "x",
    weighting: str = "max(snr,1)",
    max_weight: float = 1e4,
    grad_clip: float | None = 1.0,
    generator: torch.Generator | None = None,
    train_mode: bool = False,
) -> tuple[nn.Module, list[float]]:
    """One stage of Algorithm 2: a copy of `teacher` learns to take `student_steps` steps.

    Returns ``(student, losses per step)``; losses are averaged over ranks under DDP. The
    learning rate decays linearly to zero over the stage (as in the paper). ``train_mode``
    puts the student in ``train()`` mode (dropout, block skipping); the default keeps it in
    ``eval()`` so a fixed, evolved architecture is distilled as it will be sampled.
    """
    if steps < 1:
        raise CompressError(f"steps_per_stage must be >= 1, got {steps}")
    if prediction not in diffusion.PREDICTIONS:
        raise CompressError(f"prediction={prediction!r}; valid: {diffusion.PREDICTIONS}")
    if weighting not in diffusion.WEIGHTINGS:
        raise CompressError(f"weighting={weighting!r}; valid: {diffusion.WEIGHTINGS}")
    teacher.eval()
    student = copy.deepcopy(teacher)
    student.train(train_mode)
    for p in student.parameters():
        p.requires_grad_(True)
    trained = ddp.wrap_ddp(student)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1.0 - i / steps))
    losses: list[float] = []
    for _ in range(steps):
        x0, cond = _split(next_batch())
        b = x0.shape[0]
        i = torch.randint(1, student_steps + 1, (b,), generator=generator)
        t = (i.to(x0.dtype) / student_steps).to(x0.device)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        z_t = diffusion.q_sample(x0, t, eps)
        target = distill_target(teacher, z_t, t, student_steps, cond, prediction)
        x_hat = diffusion.predict_x(_call(trained, z_t, t, cond), z_t, t, prediction)
        loss = diffusion.diffusion_loss(x_hat, target, t, weighting, max_weight=max_weight)
        losses.append(
            ddp.optimizer_step(loss, opt, params, grad_clip=grad_clip, sched=sched, lr=lr,
                               what=f"distillation to {student_steps} steps", step=len(losses))
        )
    student.eval()
    return student, losses


def distill_progressive(
    teacher: nn.Module,
    batches: BatchSource,
    teacher_steps: int,
    steps_per_stage: int,
    lr: float = 1e-4,
    prediction: str = "x",
    on_stage: Callable[[dict[str, Any], nn.Module], None] | None = None,
    seed: int = 0,
    weighting: str = "max(snr,1)",
    final_steps: int = 1,
    grad_clip: float | None = 1.0,
    train_mode: bool = False,
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Distil `teacher` (sampled with `teacher_steps` DDIM steps) down to `final_steps` steps.

    ``batches`` yields ``(x0 (B, 80, F), cond (B, 256, F))`` (see :func:`batch_stream`).
    Each stage halves the step count and its student becomes the next stage's teacher.
    ``on_stage(record, student)`` is called after each stage (e.g. to checkpoint it).
    Returns ``(student, history)`` with one record ``{stage, from_steps, to_steps, loss_start,
    loss_end, seconds}`` per stage. The input `teacher` is not modified (its weights and its
    train / eval mode are left as they were). To resume a killed run, save each stage's student
    in ``on_stage`` and call again with it as `teacher` and its step count as `teacher_steps`.
    """
    for name, v in (("teacher_steps", teacher_steps), ("final_steps", final_steps)):
        if not isinstance(v, int) or v < 1 or v & (v - 1):
            raise CompressError(f"{name} must be a power of two >= 1, got {v!r}")
    if final_steps >= teacher_steps:
        raise CompressError(
            f"final_steps ({final_steps}) must be smaller than teacher_steps ({teacher_steps})"
        )
    if prediction not in diffusion.PREDICTIONS:
        raise CompressError(f"prediction={prediction!r}; valid: {diffusion.PREDICTIONS}")
    if steps_per_stage < 1:
        raise CompressError(f"steps_per_stage must be >= 1, got {steps_per_stage}")
    next_batch = batch_stream(batches)
    gen = torch.Generator().manual_seed(int(seed) + 1000003 * ddp.rank())
    was_training = teacher.training
    try:
        return _progressive(
            teacher,
            next_batch,
            teacher_steps,
            steps_per_stage,
            lr,
            prediction,
            on_stage,
            weighting,
            final_steps,
            grad_clip,
            gen,
            train_mode,
        )
    finally:
        teacher.train(was_training)


def _progressive(
    teacher: nn.Module,
    next_batch: Callable[[], Batch],
    teacher_steps: int,
    steps_per_stage: int,
    lr: float,
    prediction: str,
    on_stage: Callable[[dict[str, Any], nn.Module], None] | None,
    weighting: str,
    final_steps: int,
    grad_clip: float | None,
    gen: torch.Generator,
    train_mode: bool,
) -> tuple[nn.Module, list[dict[str, Any]]]:
    current = teacher
    history: list[dict[str, Any]] = []
    n = teacher_steps
    stage = 0
    while n > final_steps:
        t0 = time.perf_counter()
        student, losses = distill_stage(
            current,
            next_batch,
            n // 2,
            steps_per_stage,
            lr,
            prediction,
            weighting,
            grad_clip=grad_clip,
            generator=gen,
            train_mode=train_mode,
        )
        rec = {
            "stage": stage,
            "from_steps": n,
            "to_steps": n // 2,
            "loss_start": _window_mean(losses, first=True),
            "loss_end": _window_mean(losses, first=False),
            "seconds": time.perf_counter() - t0,
        }
        history.append(rec)
        log.info(
            "distill stage %d: %d -> %d steps, loss %.4g -> %.4g",
            stage,
            n,
            n // 2,
            rec["loss_start"],
            rec["loss_end"],
        )
        if on_stage is not None:
            on_stage(rec, student)
        current = student
        n //= 2
        stage += 1
    return current, history


# ---- output distillation -------------------------------------------------------------------
class LogMelL1(nn.Module):
    """L1 between log-mel spectrograms of waveforms ``(B, T)`` (vocoder outputs)."""

    fb: torch.Tensor
    window: torch.Tensor

    def __init__(
        self, sample_rate: int = 22050, n_fft: int = 1024, hop: int = 256, n_mels: int = 80
    ) -> None:
        super().__init__()
        import librosa

        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
        self.register_buffer("fb", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.n_fft = n_fft
        self.hop = hop

    def logmel(self, wav: torch.Tensor) -> torch.Tensor:
        wav = wav.reshape(-1, wav.shape[-1])  # (B, T)
        spec = torch.stft(wav, self.n_fft, self.hop, window=self.window, return_complex=True)
        mag = spec.abs()  # (B, n_fft/2+1, F)
        return torch.log(torch.clamp(self.fb @ mag, min=1e-5))  # (B, M, F)

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (self.logmel(out) - self.logmel(target)).abs().mean()


def _as_args(batch: Batch) -> tuple[Any, ...]:
    if isinstance(batch, tuple | list):
        return tuple(batch)
    return (batch,)


def output_distill(
    teacher: nn.Module,
    student: nn.Module,
    batches: BatchSource,
    steps: int,
    lr: float = 1e-3,
    loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "mse",
    grad_clip: float | None = 1.0,
    output: Callable[[Any], torch.Tensor] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train `student` to reproduce `teacher`'s outputs on the inputs from `batches`.

    A batch is the model input (a tensor, or a tuple passed as positional arguments).
    ``loss``: ``"mse"``, ``"l1"``, ``"logmel_l1"`` (:class:`LogMelL1` with its defaults, for
    waveform outputs) or a callable ``(student_out, teacher_out) -> scalar``. ``output`` picks
    the tensor to match when a model returns a tuple (default: the first element).
    Returns ``(student, {steps, loss_start, loss_end, seconds})``; `student` is trained in place
    (wrapped by DDP when running distributed).
    """
    if steps < 1:
        raise CompressError(f"output distillation: steps must be >= 1, got {steps}")
    if callable(loss):
        loss_fn = loss
    elif loss == "mse":
        loss_fn = nn.functional.mse_loss
    elif loss == "l1":
        loss_fn = nn.functional.l1_loss
    elif loss == "logmel_l1":
        loss_fn = LogMelL1()
    else:
        raise CompressError(f"output distillation: loss={loss!r}; valid: {OUTPUT_LOSSES}")

    def pick(o: Any) -> torch.Tensor:
        if output is not None:
            return output(o)
        return o[0] if isinstance(o, tuple | list) else o

    next_batch = batch_stream(batches)
    teacher.eval()
    student.train()
    trained = ddp.wrap_ddp(student)
    params = [p for p in student.parameters() if p.requires_grad]
    if not params:
        raise CompressError("output distillation: the student has no trainable parameters")
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1.0 - i / steps))
    losses: list[float] = []
    t0 = time.perf_counter()
    for _ in range(steps):
        args = _as_args(next_batch())
        with torch.no_grad():
            target = pick(teacher(*args))
        out = pick(trained(*args))
        if out.shape != target.shape:
            raise CompressError(
                f"output distillation: student output {tuple(out.shape)} differs from the "
                f"teacher's {tuple(target.shape)}"
            )
        value = loss_fn(out, target)
        losses.append(
            ddp.optimizer_step(value, opt, params, grad_clip=grad_clip, sched=sched, lr=lr,
                               what="output distillation", step=len(losses))
        )
    student.eval()
    return student, {
        "steps": steps,
        "loss_start": _window_mean(losses, first=True),
        "loss_end": _window_mean(losses, first=False),
        "seconds": time.perf_counter() - t0,
    }
