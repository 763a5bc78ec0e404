"""Train a frame classifier on a frame bank: `train(TrainConfig(...))` (icefall's train.py skeleton).

Minibatches are random frame indices into a bank held on the device; the context window of each
frame is gathered there with one index op. Outputs in the config's exp_dir: final.pt (FrameClassifier
with priors), best.pt, epoch-N.pt, checkpoint.pt (latest resumable state; checkpoint.prev.pt, the one
before it, is resumed from when checkpoint.pt is damaged), params.json, metrics.csv, train.log, and
tensorboard/ (the metrics.csv rows and each epoch's loss terms as TensorBoard events). Training the
same config again resumes from checkpoint.pt exactly where the last run stopped.

Inside, icefall's shape: get_params, compute_loss, train_one_epoch, and run(rank, world_size, ...) on
each data-parallel rank. The command line over it is `asr-kd train` (asr_kd/bin/train.py).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from asr_kd.data.frame_bank import UNLABELLED, FrameBank
from asr_kd.distill.ensemble import EnsembleTeacher, MeanType
from asr_kd.distill.losses import distillation_loss, hard_cross_entropy_and_correct
from asr_kd.distill.schedules import ConstantSchedule, DistillationSchedule, parse_schedule
from asr_kd.distill.soft_targets import SoftTargetStore
from asr_kd.models.frame_classifier import FrameClassifier, FrameClassifierConfig, check_same_config
from asr_kd.models.shapes import shape_config
from asr_kd.score.frame_accuracy import score_bank_sums
from asr_kd.train.attribute_dict import AttributeDict
from asr_kd.train.augment import parse_augment
from asr_kd.train.checkpoint import load_resumable, previous_path, rng_states, save_checkpoint, set_rng_states
from asr_kd.train.sampler import MixedEpochs, epoch_order, parse_mix_shares, utterance_groups
from asr_kd.train.schedule import LrSchedule, make_schedule
from asr_kd.train.tensorboard_log import TensorBoardLog, row_scalars
from asr_kd.utils.device import AmpMode, resolve_device, slow_precision_note, use_bf16
from asr_kd.utils.device import autocast as device_autocast
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json
from asr_kd.utils.logging import setup_logging
from asr_kd.utils.safe_files import trust_pickle

__all__ = ["TrainConfig", "TrainHooks", "TrainingDiverged", "train"]

log = logging.getLogger(__name__)

CSV_FIELDS = ["epoch", "step", "lr", "loss", "train_acc", "dev_acc", "dev_ce", "frames_per_s"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is left in place."""


@dataclass
class TrainConfig:
    """One training run: a field per option of `asr-kd train`, same name and default (`asr-kd train --help`).

    None for a model field means the model shape's value; exp_dir and either frame_bank (holding train/
    and dev/) or both train_bank and dev_bank are needed.
    """

    # data
    exp_dir: Path
    frame_bank: Path | None = None
    train_bank: Path | None = None
    dev_bank: Path | None = None
    subset_fraction: float = 1.0
    subset_seed: int = 0
    frames_per_epoch: int = 0
    mix_shares: str | None = None  # e.g. "original=0.5": fixed shares of each epoch by group (asr_kd.train.sampler)
    # model
    model_shape: str = "tiny"  # a name of asr_kd.models.MODEL_SHAPES, or LAYERSxWIDTH (e.g. 3x512)
    left_context: int | None = None
    right_context: int | None = None
    activation: Literal["relu", "sigmoid", "tanh", "gelu", "silu"] | None = None
    dropout: float | None = None
    norm: Literal["none", "layernorm", "batchnorm"] | None = None
    input_norm: Literal["none", "layernorm", "batchnorm"] | None = None
    input_lifter: int | None = None
    # optimisation
    num_epochs: int = 10
    batch_size: int = 1024
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.08
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: Literal["newbob", "plateau", "cosine", "constant"] = "newbob"
    newbob_start_gain: float = 0.005
    newbob_end_gain: float = 0.0005
    warmup_steps: int = 0
    min_lr: float = 0.0
    grad_clip: float = 5.0
    max_norm: float = 0.0
    early_stopping_patience: int = 0
    dev_every: int = 1  # evaluate dev after every N-th epoch and the last (1 under early stopping or newbob)
    seed: int = 1
    shuffle_seed: int | None = None
    init_from: Path | None = None
    # distillation
    teacher_checkpoints: list[Path] = field(default_factory=list)
    teacher_mean: MeanType = "arithmetic"
    soft_targets_dir: Path | None = None
    min_kept_mass: float = 0.9
    resident_soft_targets: str = "auto"  # yes / no / auto (yes on CUDA): the store's arrays on the device
    temperature: float = 1.0
    hard_weight: float = 0.5
    temperature_schedule: str | None = None
    hard_weight_schedule: str | None = None
    augment: str = "none"
    soft_until_epoch: int | None = None
    # running
    device: str = "auto"
    amp: AmpMode = "auto"
    world_size: int = 1
    master_port: int = 12354
    checkpoint_every: int = 2000
    keep_last_epochs: int = 0  # epoch-N.pt files kept, the latest ones (0: all)
    log_interval: int = 50
    max_steps: int = 0
    no_resume: bool = False
    trust_pickle: bool = False
    progress_bar: bool = True  # no option: the command line always shows it

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values (paths as strings)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass
class TrainHooks:
    """Where a caller changes what the trainer feeds the model (each None: off); e.g. specialists, MNIST jitter."""

    input_transform: Callable[[Tensor, Tensor], Tensor] | None = None
    """(windows, labels) -> windows, applied to training windows only (before --augment), e.g. image jitter."""
    train_frames_fn: Callable[[FrameBank, np.ndarray], np.ndarray] | None = None
    """(training bank, the subset's frame indices) -> the int64 frame indices (repeats allowed) of one epoch,
    e.g. a class-balanced resampling."""
    soft_target_transform: Callable[[Tensor], Tensor] | None = None
    """Teacher distributions (B, C) -> (B, C'), e.g. collapsed onto the student's classes; a teacher may
    then have other classes than the bank."""


def get_params() -> AttributeDict:
    """Settings that are not options, and the run's bookkeeping."""
    return AttributeDict({
        "eval_batch_size": 8192,
        "checkpoint_name": "checkpoint.pt",
    })


def make_params(config: TrainConfig, hooks: TrainHooks | None = None) -> AttributeDict:
    """get_params() with the hooks and the config's fields: what one rank trains with."""
    params = get_params()
    params.update(vars(hooks or TrainHooks()))
    params.update({f.name: getattr(config, f.name) for f in dataclasses.fields(config)})
    return params


def model_config(params: AttributeDict, bank: FrameBank) -> FrameClassifierConfig:
    """The model shape with the user's overrides; feature dim and outputs come from the bank."""
    return shape_config(params.model_shape, left_context=params.left_context, right_context=params.right_context,
                        activation=params.activation, dropout=params.dropout, norm=params.norm,
                        input_norm=params.input_norm, input_lifter=params.input_lifter, feat_dim=bank.feat_dim,
                        num_outputs=bank.num_classes)


def mixed_epochs(params: AttributeDict, bank: FrameBank, train_frames: np.ndarray,
                 source: Path) -> MixedEpochs | None:
    """The --mix-shares sampler over `train_frames` (None without the option)."""
    if not params.mix_shares:
        return None
    groups = np.asarray(utterance_groups(bank.cut_ids))
    frame_utts = bank.utterance_of(torch.from_numpy(train_frames)).cpu().numpy()
    return MixedEpochs(groups[frame_utts], parse_mix_shares(params.mix_shares), params.epoch_frames,
                       params.shuffle_seed, source=str(source))


def autocast(params: AttributeDict) -> contextlib.AbstractContextManager:
    """bf16 autocast when enabled for this run, else nothing."""
    return device_autocast(params.device, params.use_bf16)


def compute_loss(params: AttributeDict, model: nn.Module, batch: dict[str, Tensor],
                 is_training: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss of one minibatch (hard CE, or the distillation loss when the batch has teacher_probs)."""
    labels = batch["labels"]
    with torch.set_grad_enabled(is_training), autocast(params):
        logits = model(batch["inputs"])
    teacher_probs = batch.get("teacher_probs")
    with torch.set_grad_enabled(is_training):
        # The hard CE's own pass over the logits finds the arg-max: the accuracy counter comes free.
        if teacher_probs is None:
            loss, correct = hard_cross_entropy_and_correct(logits, labels)
        else:
            # One fp32 copy for both terms: their gradients add up in fp32 before the cast back.
            loss, stats = distillation_loss(logits.float(), labels, teacher_probs, temperature=params.temperature,
                                            hard_weight=params.hard_weight, kl_stat=False)
            correct = stats["correct"]
    info = {
        "loss_sum": loss.detach() * labels.numel(),
        "correct": correct,  # UNLABELLED (-1) never equals an arg-max: labelled frames only
        "labelled": (labels != UNLABELLED).sum(),
        "nonfinite": (~torch.isfinite(loss.detach())).to(torch.int64),
    }
    return loss, info


class Teacher:
    """Soft targets for training frames: stored top-k, or an ensemble run on the same windows."""

    def __init__(self, params: AttributeDict, bank: FrameBank):
        self.params, self.bank = params, bank
        self.store = self.ensemble = None
        if params.soft_targets_dir and params.teacher_checkpoints:
            raise InputError("give either --soft-targets-dir or --teacher-checkpoints, not both")
        if params.soft_targets_dir:
            # The store must be of this bank's frames, at this temperature; resident on a GPU (or when asked).
            resident = params.resident_soft_targets == "yes" or (params.resident_soft_targets == "auto"
                                                                 and params.device.type == "cuda")
            self.store = SoftTargetStore.load(
                params.soft_targets_dir, expect_temperature=params.temperature,
                expect_frame_bank_checksum=bank.manifest["checksum"], device=params.device if resident else None)
            log.info("soft targets from %s, %s", params.soft_targets_dir,
                     f"resident on {params.device}" if resident else "memory-mapped")
            if self.store.num_classes != bank.num_classes:
                raise InputError(f"{params.soft_targets_dir}: {self.store.num_classes} classes, the frame bank "
                                 f"has {bank.num_classes}")
            if self.store.mean_kept_mass < params.min_kept_mass:
                raise InputError(
                    f"{params.soft_targets_dir}: its top-{self.store.k} keep {100 * self.store.mean_kept_mass:.1f}% of "
                    f"the teacher's mass per frame on average (below --min-kept-mass {params.min_kept_mass:g}): the "
                    "student would learn a sharper, different teacher. Rebuild the store with a larger --top-k "
                    "(asr-kd make-soft-targets --top-k auto picks one), or teach online with --teacher-checkpoints")
        elif params.teacher_checkpoints:
            self.ensemble = EnsembleTeacher.load([str(p) for p in params.teacher_checkpoints], params.device,
                                                 mean=params.teacher_mean)
            # A soft_target_transform (specialists) maps the teacher's classes onto the bank's itself.
            for path, member in zip(params.teacher_checkpoints, self.ensemble.members):
                if member.config.num_outputs != bank.num_classes and params.get("soft_target_transform") is None:
                    raise InputError(f"{path}: a teacher of {member.config.num_outputs} classes, the frame bank "
                                     f"{bank.directory} has {bank.num_classes}")
            self.left, self.right = self.ensemble.context

    @property
    def active(self) -> bool:
        return self.store is not None or self.ensemble is not None

    @torch.no_grad()
    def probs(self, frame_idx: Tensor, inputs: Tensor) -> Tensor:
        """Teacher distribution (B, C) at the training temperature."""
        if self.store is not None:
            return self.store.lookup(frame_idx, self.params.device)
        assert self.ensemble is not None
        if (self.left, self.right) != (self.params.model_left, self.params.model_right):
            inputs = self.bank.splice(frame_idx, self.left, self.right)
        with autocast(self.params):
            return self.ensemble.soft_targets(inputs, self.params.temperature).float()


def make_batch(params: AttributeDict, bank: FrameBank, frame_idx: Tensor, teacher: Teacher | None) -> dict[str, Tensor]:
    """Spliced windows, labels (and teacher distributions) of the frames `frame_idx`."""
    batch = {"frame_idx": frame_idx,
             "inputs": bank.splice(frame_idx, params.model_left, params.model_right),
             "labels": bank.batch_labels(frame_idx)}
    if params.get("input_transform") is not None:
        batch["inputs"] = params.input_transform(batch["inputs"], batch["labels"])
    if teacher is not None and teacher.active and params.get("use_soft", True):
        batch["teacher_probs"] = teacher.probs(frame_idx, batch["inputs"])
        if params.get("soft_target_transform") is not None:
            batch["teacher_probs"] = params.soft_target_transform(batch["teacher_probs"])
    return batch


def distillation_schedule(params: AttributeDict) -> DistillationSchedule:
    """The per-epoch T / hard weight / soft-term switch from the options (constants when no schedule)."""
    if params.temperature <= 0 and not params.temperature_schedule:
        raise InputError(f"--temperature must be > 0, got {params.temperature:g}")
    if params.temperature_schedule and params.soft_targets_dir:
        raise InputError(f"--temperature-schedule needs the online teacher: {params.soft_targets_dir} stores "
                         f"soft targets at one temperature ({params.temperature})")
    return DistillationSchedule(
        temperature=parse_schedule(params.temperature_schedule) if params.temperature_schedule
        else ConstantSchedule(params.temperature),
        hard_weight=parse_schedule(params.hard_weight_schedule) if params.hard_weight_schedule
        else ConstantSchedule(params.hard_weight),
        soft_until_epoch=params.soft_until_epoch)


def apply_distillation_settings(params: AttributeDict, schedule: DistillationSchedule, epoch: int) -> None:
    """Set params.temperature / hard_weight / use_soft for `epoch` (a function of the epoch only: resumable)."""
    settings = schedule.at(epoch)
    params.temperature, params.hard_weight, params.use_soft = (settings.temperature, settings.hard_weight,
                                                               settings.use_soft)


def train_step(params: AttributeDict, model: nn.Module, optimizer: torch.optim.Optimizer,
               batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Forward, backward, clip, update; returns device-side counters (no host sync)."""
    loss, info = compute_loss(params, model, batch, is_training=True)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if params.grad_clip > 0:
        clip_gradients(model, params.grad_clip)
    optimizer.step()
    if params.get("max_norm", 0.0) > 0:
        apply_max_norm(model, params.max_norm)
    return info


def clip_gradients(model: nn.Module, max_norm: float) -> None:
    """Scale the gradients to a total 2-norm of at most `max_norm`, as clip_grad_norm_ does.

    On the CPU the gradients are rescaled only when they exceed it: reading the norm costs no device
    sync there, and it saves a pass over every gradient on almost every step. On a GPU the rescale
    stays unconditional, so the step never waits for the device.
    """
    parameters = [p for p in model.parameters() if p.grad is not None]
    if not parameters or parameters[0].device.type != "cpu":
        nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    total = nn.utils.get_total_norm([p.grad for p in parameters])
    if not total <= max_norm:  # NaN too: clip_grad_norm_ would spread it into every gradient
        nn.utils.clip_grads_with_norm_(parameters, max_norm, total)


@torch.no_grad()
def apply_max_norm(model: nn.Module, max_norm: float) -> None:
    """Rescale each row (one unit's incoming weights) of every Linear layer whose L2 norm exceeds `max_norm`."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.copy_(torch.renorm(module.weight, p=2, dim=0, maxnorm=max_norm))


class MetricsCsv:
    """metrics.csv, appended row by row; truncated back to a checkpoint's row count on resume.

    Every row also goes to the run's TensorBoard events (tensorboard/ beside the CSV), with the
    scalars a row carries beyond the CSV's columns (temperature, loss terms).
    """

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled
        self.rows = 0
        self.tensorboard = TensorBoardLog(path.parent / "tensorboard", enabled)
        if enabled and not path.is_file():
            path.write_text(",".join(CSV_FIELDS) + "\n")

    def truncate(self, rows: int) -> None:
        """Drop rows written after the checkpoint being resumed (TensorBoard's events after its last kept step)."""
        if self.enabled:
            kept = self.path.read_text().splitlines(keepends=True)[:rows + 1]
            self.path.write_text("".join(kept))
            last = list(csv.DictReader(kept))[-1:]
            self.tensorboard.restart(int(last[0]["step"]) if last else None)
        self.rows = rows

    def append(self, **row: Any) -> None:
        self.rows += 1
        if self.enabled:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, CSV_FIELDS).writerow({k: _fmt(row.get(k)) for k in CSV_FIELDS})
            self.tensorboard.write(row["step"], row_scalars(row))


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _unwrap(model: nn.Module) -> FrameClassifier:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model  # type: ignore[return-value]


def _all_reduce(t: Tensor, params: AttributeDict) -> Tensor:
    if params.world_size > 1:
        t = t.to(params.comm_device)
        dist.all_reduce(t)
    return t


def evaluate(params: AttributeDict, model: nn.Module, bank: FrameBank) -> tuple[float, float]:
    """Dev frame accuracy and mean CE, each rank scoring its slice of the frames."""
    model.eval()
    n = bank.num_frames
    lo, hi = n * params.rank // params.world_size, n * (params.rank + 1) // params.world_size
    idx = torch.arange(lo, hi, device=bank.device)
    sums = score_bank_sums(_unwrap(model), bank, params.model_left, params.model_right, idx,
                           batch_size=params.eval_batch_size, amp=params.use_bf16)
    model.train()
    correct, ce, frames = _all_reduce(sums, params).tolist()
    return correct / frames, ce / frames


@torch.no_grad()
def loss_terms(params: AttributeDict, model: FrameClassifier, bank: FrameBank, train_frames: np.ndarray,
               teacher: Teacher) -> dict[str, float]:
    """Hard CE (and soft CE, KL, T, hard weight under a teacher) on a fixed, evenly spread sample of training frames.

    For the end-of-epoch TensorBoard row: the step loop sums the total loss only. Eval mode, no
    augmentation and no RNG draw, so the run trains exactly as it would without it.
    """
    positions = np.linspace(0, len(train_frames) - 1, min(len(train_frames), params.eval_batch_size))
    frame_idx = torch.from_numpy(train_frames[positions.round().astype(np.int64)]).to(bank.feats.device)
    inputs = bank.splice(frame_idx, params.model_left, params.model_right)
    model.eval()
    with autocast(params):
        logits = model(inputs)
    model.train()
    teacher_probs = None
    if teacher.active and params.get("use_soft", True):
        teacher_probs = teacher.probs(frame_idx, inputs)
        if params.get("soft_target_transform") is not None:
            teacher_probs = params.soft_target_transform(teacher_probs)
    _, stats = distillation_loss(logits.float(), bank.batch_labels(frame_idx), teacher_probs,
                                 temperature=params.temperature, hard_weight=params.hard_weight)
    terms = {name: float(value) for name, value in stats.items() if name not in ("loss", "correct")}
    if teacher_probs is not None:
        terms.update(temperature=params.temperature, hard_weight=params.hard_weight)
    return terms


def write_checkpoint(params: AttributeDict, model: nn.Module, optimizer: torch.optim.Optimizer,
                     schedule: LrSchedule, state: AttributeDict, path: Path) -> None:
    """Every rank's RNG states, the optimizer, schedule and loop position, written by rank 0."""
    rngs: list[Any] = [rng_states()]
    if params.world_size > 1:
        rngs = [None] * params.world_size
        dist.all_gather_object(rngs, rng_states())
    if params.rank == 0:
        train_state = {"state": dict(state), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                       "rng": rngs, "params": {k: _jsonable(v) for k, v in params.items()}}
        save_checkpoint(path, _unwrap(model), train_state, keep_previous=path.name == params.checkpoint_name)
    if params.world_size > 1:
        dist.barrier()


def _jsonable(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)


def check_finite(params: AttributeDict, state: AttributeDict, nonfinite: Tensor) -> None:
    """Stop with TrainingDiverged when any loss since the last check was NaN/inf."""
    if int(_all_reduce(nonfinite.clone(), params).item()) > 0:
        ckpt = Path(params.exp_dir) / params.checkpoint_name
        kept = f"last good checkpoint {ckpt} kept" if ckpt.is_file() else "no checkpoint was written yet"
        raise TrainingDiverged(
            f"non-finite loss at or before global step {state.global_step} (epoch {state.epoch}, step "
            f"{state.step_in_epoch} of the epoch); training stopped, {kept}. Lower --lr or set --grad-clip.")


def train_one_epoch(params: AttributeDict, model: nn.Module, optimizer: torch.optim.Optimizer,
                    schedule: LrSchedule, train_bank: FrameBank, shard: Tensor, teacher: Teacher | None,
                    state: AttributeDict, metrics: MetricsCsv) -> bool:
    """Steps state.step_in_epoch.. of this epoch; returns False when --max-steps stopped it early."""
    model.train()
    bs = params.batch_size
    steps = params.steps_per_epoch
    # [loss, correct, labelled frames] summed over the log interval and over the epoch, kept on the
    # device so the loop never waits for the GPU except at log and checkpoint steps.
    sums = torch.tensor(state.sums, dtype=torch.float64, device=params.device)
    nonfinite = torch.zeros((), dtype=torch.int64, device=params.device)
    tic, tic_steps = time.perf_counter(), 0
    bar = tqdm(total=steps, initial=state.step_in_epoch, desc=f"epoch {state.epoch}", unit="step",
               disable=params.rank != 0 or not params.progress_bar, mininterval=2.0, leave=False)
    ckpt_path = Path(params.exp_dir) / params.checkpoint_name

    while state.step_in_epoch < steps:
        if params.max_steps and state.global_step >= params.max_steps:
            bar.close()
            check_finite(params, state, nonfinite)
            state.sums = sums.tolist()
            return False
        i = state.step_in_epoch
        schedule.step(state.global_step)
        batch = make_batch(params, train_bank, shard[i * bs:(i + 1) * bs], teacher)
        info = train_step(params, model, optimizer, batch)
        step_sums = torch.stack([info["loss_sum"].double(), info["correct"].double(), info["labelled"].double()])
        sums += torch.cat([step_sums, step_sums])
        nonfinite += info["nonfinite"]
        state.step_in_epoch += 1
        state.global_step += 1
        tic_steps += 1
        bar.update(1)
        if state.step_in_epoch % params.log_interval == 0:
            check_finite(params, state, nonfinite)
            fps = tic_steps * bs * params.world_size / max(time.perf_counter() - tic, 1e-9)
            frames = params.log_interval * bs * params.world_size
            loss_sum, correct, labelled = _all_reduce(sums[:3].clone(), params).tolist()
            loss, acc = loss_sum / frames, correct / max(labelled, 1.0)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", lr=f"{schedule.lr:.3g}")
            metrics.append(epoch=state.epoch, step=state.global_step, lr=schedule.lr, loss=loss, train_acc=acc,
                           frames_per_s=fps)
            sums[:3] = 0
            tic, tic_steps = time.perf_counter(), 0
        if state.global_step % params.checkpoint_every == 0 and state.step_in_epoch < steps:
            check_finite(params, state, nonfinite)
            state.sums = sums.tolist()
            state.csv_rows = metrics.rows
            write_checkpoint(params, model, optimizer, schedule, state, ckpt_path)
    bar.close()
    check_finite(params, state, nonfinite)
    frames = steps * bs * params.world_size
    loss_sum, correct, labelled = _all_reduce(sums[3:].clone(), params).tolist()
    state.epoch_train = {"loss": loss_sum / frames, "acc": correct / max(labelled, 1.0)}
    state.sums = [0.0] * 6
    return True


def _make_optimizer(params: AttributeDict, model: nn.Module) -> torch.optim.Optimizer:
    # Fused kernels exist for CUDA and, since torch 2.4, for the CPU: one pass over the weights per step.
    fused = {"fused": True} if params.device.type in ("cuda", "cpu") else {}
    if params.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay, **fused)
    return torch.optim.SGD(model.parameters(), lr=params.lr, momentum=params.momentum,
                           weight_decay=params.weight_decay, **fused)


def _then(first: Callable[[Tensor, Tensor], Tensor] | None,
          second: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """An input transform applying `first` (when there is one), then `second`."""
    if first is None:
        return second
    return lambda inputs, labels: second(first(inputs, labels), labels)


def _resolve_banks(params: AttributeDict) -> tuple[Path, Path]:
    train_dir = params.train_bank or (Path(params.frame_bank) / "train" if params.frame_bank else None)
    dev_dir = params.dev_bank or (Path(params.frame_bank) / "dev" if params.frame_bank else None)
    if train_dir is None or dev_dir is None:
        raise InputError("give --frame-bank DIR (with train/ and dev/) or both --train-bank and --dev-bank")
    return Path(train_dir), Path(dev_dir)


def train(config: TrainConfig, hooks: TrainHooks | None = None) -> Path:
    """Train into config.exp_dir, resuming from its checkpoint.pt; returns final.pt (absent if max_steps stopped it).

    Joins torchrun's ranks when launched by torchrun, spawns config.world_size ranks when that is
    > 1 (`hooks` must then pickle), else trains in this process. Bad input raises InputError, a
    non-finite loss TrainingDiverged.
    """
    with trust_pickle(config.trust_pickle):
        if "WORLD_SIZE" in os.environ and "RANK" in os.environ:  # launched by torchrun
            run(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), config, hooks)
        elif config.world_size > 1:
            torch.multiprocessing.spawn(run, args=(config.world_size, config, hooks), nprocs=config.world_size,
                                        join=True)
        else:
            run(0, 1, config, hooks)
    return Path(config.exp_dir) / "final.pt"


def run(rank: int, world_size: int, config: TrainConfig, hooks: TrainHooks | None = None) -> None:
    """Train on one rank of `world_size` (1: a single process)."""
    params = make_params(config, hooks)
    params.rank, params.world_size = rank, world_size
    exp_dir = Path(params.exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(exp_dir / "train.log" if rank == 0 else None)
    params.device = resolve_device(params.device, rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if params.device.type == "cuda" else "gloo"
        init = "env://" if "MASTER_ADDR" in os.environ else f"tcp://127.0.0.1:{params.master_port}"
        dist.init_process_group(backend, init_method=init, rank=rank, world_size=world_size)
    params.comm_device = params.device if params.device.type == "cuda" else torch.device("cpu")
    if world_size > 1 and params.device.type == "cpu":
        # Ranks wait for each other every step: oversubscribed cores would stall them all.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    try:
        _train(params)
    except TrainingDiverged as err:
        if rank == 0:
            log.error("%s", err)  # train.log says why the run stopped
        raise
    finally:
        if world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(params: AttributeDict) -> None:
    exp_dir = Path(params.exp_dir)
    ckpt_path = exp_dir / params.checkpoint_name
    final_path = exp_dir / "final.pt"
    resumed = None if params.no_resume else load_resumable(ckpt_path)  # (file read, checkpoint, train_state)
    if resumed and final_path.is_file() and resumed[2].get("state", {}).get("finished"):
        log.info("%s is complete (final.pt written); nothing to do", exp_dir)
        return
    if params.dev_every < 1 or (params.dev_every > 1 and (params.early_stopping_patience > 0
                                                          or params.lr_schedule in ("newbob", "plateau"))):
        raise InputError(f"--dev-every {params.dev_every}: must be >= 1, and 1 under early stopping or the newbob "
                         "and plateau schedules (they read dev after every epoch)")
    if params.keep_last_epochs < 0:
        raise InputError(f"--keep-last-epochs {params.keep_last_epochs}: must be >= 0 (0 keeps every epoch-N.pt)")
    params.use_bf16 = use_bf16(params.amp, params.device)
    params.shuffle_seed = params.seed if params.shuffle_seed is None else params.shuffle_seed
    augment = parse_augment(params.augment)
    if augment.active:
        params.input_transform = _then(params.get("input_transform"), augment)
    train_path, dev_path = _resolve_banks(params)
    train_bank = FrameBank.load(train_path, params.device)
    dev_bank = FrameBank.load(dev_path, params.device)
    if (dev_bank.feat_dim, dev_bank.num_classes) != (train_bank.feat_dim, train_bank.num_classes):
        raise InputError(f"{dev_path}: feat_dim/num_classes {dev_bank.feat_dim}/{dev_bank.num_classes} differ from "
                         f"the training bank's {train_bank.feat_dim}/{train_bank.num_classes}")
    config = model_config(params, train_bank)
    params.model_left, params.model_right = config.left_context, config.right_context
    train_frames = train_bank.subset_frames(params.subset_fraction, params.subset_seed)
    if params.get("train_frames_fn") is not None:
        train_frames = np.asarray(params.train_frames_fn(train_bank, train_frames), dtype=np.int64)
    params.epoch_frames = params.frames_per_epoch or len(train_frames)
    params.steps_per_epoch = params.epoch_frames // (params.batch_size * params.world_size)
    if params.steps_per_epoch == 0:
        raise InputError(f"{train_path}: {len(train_frames)} training frames are fewer than one step of "
                         f"{params.batch_size} x {params.world_size} ranks; lower --batch-size")
    mixed = mixed_epochs(params, train_bank, train_frames, train_path)
    if params.rank == 0:
        # What this run was asked to do, for reports: the options and the model config.
        atomic_write_json(exp_dir / "params.json", {**{k: _jsonable(v) for k, v in params.items()},
                                                    "model": dataclasses.asdict(config)})
        log.info("train %s (%d of its frames), dev %s; model %s; %d steps/epoch on %s%s, %d CPU thread(s)",
                 train_bank, len(train_frames), dev_bank, config, params.steps_per_epoch, params.device,
                 " bf16" if params.use_bf16 else "", torch.get_num_threads())
        note = slow_precision_note(params.amp, params.device)
        if note:
            log.warning("%s", note)
        if mixed is not None:
            log.info("frames per epoch by group (--mix-shares %s): %s", params.mix_shares, mixed.describe())

    torch.manual_seed(params.seed)  # the same initial weights on every rank
    model = FrameClassifier(config)
    if params.init_from is not None:
        model.load_weights(params.init_from)  # InputError when its config differs from this run's
    # Priors of the class distribution the network sees: with --mix-shares, each group's at its share.
    model.set_priors(train_bank.class_counts(train_frames) if mixed is None
                     else mixed.class_counts(lambda positions: train_bank.class_counts(train_frames[positions])))
    model.to(params.device)
    optimizer = _make_optimizer(params, model)
    schedule = make_schedule(params.lr_schedule, optimizer, params.lr, params.num_epochs * params.steps_per_epoch,
                             warmup_steps=params.warmup_steps, min_lr=params.min_lr,
                             start_gain=params.newbob_start_gain, end_gain=params.newbob_end_gain)
    # The shuffle is a function of these (and the epoch): the sampler's whole state.
    sampler = {"seed": params.shuffle_seed, "batch_size": params.batch_size, "world_size": params.world_size,
               "subset_fraction": params.subset_fraction, "subset_seed": params.subset_seed,
               "num_train_frames": int(len(train_frames)), "frames_per_epoch": int(params.epoch_frames)}
    if mixed is not None:
        sampler["mix_shares"] = params.mix_shares
    state = AttributeDict(epoch=1, step_in_epoch=0, global_step=0, best_dev_acc=-1.0, best_epoch=0,
                          csv_rows=0, finished=False, sums=[0.0] * 6, epoch_train={}, sampler=sampler)
    metrics = MetricsCsv(exp_dir / "metrics.csv", enabled=params.rank == 0)
    if resumed:
        resume_path, ckpt, train_state = resumed
        check_same_config(resume_path, config, FrameClassifierConfig.from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(train_state["optimizer"])
        schedule.load_state_dict(train_state["schedule"])
        saved = train_state["state"]["sampler"]
        diffs = [f"{k}: checkpoint {saved.get(k)!r} != now {sampler.get(k)!r}"
                 for k in {**saved, **sampler} if sampler.get(k) != saved.get(k)]
        if diffs:
            raise InputError(f"{resume_path}: cannot resume with other data settings ({'; '.join(diffs)}); "
                             "rerun with the original options or pass --no-resume")
        state.update(train_state["state"])
        if len(state.sums) != 6:  # written before labelled frames were counted: only log lines restart
            state.sums = [0.0] * 6
        rngs = train_state["rng"]
        set_rng_states(rngs[params.rank] if len(rngs) == params.world_size else rngs[0])
        metrics.truncate(state.csv_rows)
        if params.rank == 0:
            log.info("resuming from %s: epoch %d, step %d of the epoch", resume_path, state.epoch, state.step_in_epoch)
    else:
        metrics.truncate(0)
        if params.rank == 0:  # another run's checkpoints must not become this run's previous one
            ckpt_path.unlink(missing_ok=True)
            previous_path(ckpt_path).unlink(missing_ok=True)
        torch.manual_seed(params.seed + 7919 * (params.rank + 1))  # dropout masks differ between ranks
        random.seed(params.seed)
        np.random.seed(params.seed)

    ddp_model: nn.Module = model
    if params.world_size > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[params.device.index] if params.device.type == "cuda" else None)
    distill_schedule = distillation_schedule(params)
    teacher = Teacher(params, train_bank)
    if not teacher.active and train_bank.num_labelled_frames < train_bank.num_frames:
        raise InputError(f"{train_path}: {train_bank.num_frames - train_bank.num_labelled_frames} of its frames have no "
                         "label (a transfer set); without a teacher (--soft-targets-dir or --teacher-checkpoints) "
                         "there is nothing to learn from them")
    frames_on_device = torch.from_numpy(train_frames).to(train_bank.feats.device)

    while state.epoch <= params.num_epochs and not state.finished:
        if teacher.active:
            apply_distillation_settings(params, distill_schedule, state.epoch)
        if mixed is None:
            order = epoch_order(len(train_frames), params.shuffle_seed, state.epoch, params.epoch_frames)
        else:
            order = mixed(state.epoch)
        shard = frames_on_device[order.to(frames_on_device.device)[params.rank::params.world_size]]
        tic = time.perf_counter()
        if not train_one_epoch(params, ddp_model, optimizer, schedule, train_bank, shard, teacher, state, metrics):
            state.csv_rows = metrics.rows
            write_checkpoint(params, ddp_model, optimizer, schedule, state, ckpt_path)
            if params.rank == 0:
                log.info("stopped after --max-steps %d; rerun to resume", params.max_steps)
            return
        elapsed = time.perf_counter() - tic
        dev_acc = dev_ce = None
        stop = improved = False
        if state.epoch % params.dev_every == 0 or state.epoch == params.num_epochs:
            dev_acc, dev_ce = evaluate(params, ddp_model, dev_bank)
            if not math.isfinite(dev_ce):
                raise TrainingDiverged(f"dev CE is {dev_ce} after epoch {state.epoch}; the last good checkpoint "
                                       f"{ckpt_path} is kept")
            stop = schedule.epoch_end(dev_acc)
            improved = dev_acc > state.best_dev_acc
            if improved:
                state.best_dev_acc, state.best_epoch = dev_acc, state.epoch
        if params.rank == 0:
            dev = "not evaluated" if dev_acc is None else f"acc {dev_acc:.4f} ce {dev_ce:.4f}"
            log.info("epoch %d: train loss %.4f acc %.4f | dev %s | lr %.4g | %.0f s", state.epoch,
                     state.epoch_train["loss"], state.epoch_train["acc"], dev, schedule.lr, elapsed)
            if dev_acc is not None:  # epoch rows are the rows with a dev accuracy (metrics.csv's convention)
                metrics.append(epoch=state.epoch, step=state.global_step, lr=schedule.lr,
                               loss=state.epoch_train["loss"], train_acc=state.epoch_train["acc"], dev_acc=dev_acc,
                               dev_ce=dev_ce,
                               frames_per_s=params.steps_per_epoch * params.batch_size * params.world_size / elapsed,
                               **loss_terms(params, model, train_bank, train_frames, teacher))
            if improved:
                model.save(exp_dir / "best.pt", epoch=state.epoch, dev_accuracy=dev_acc, dev_ce=dev_ce)
        patience = params.early_stopping_patience
        if patience > 0 and state.epoch - state.best_epoch >= patience:
            stop = True
            if params.rank == 0:
                log.info("early stopping: no dev accuracy gain for %d epochs (best %.4f at epoch %d)",
                         patience, state.best_dev_acc, state.best_epoch)
        state.epoch += 1
        state.step_in_epoch = 0
        state.finished = stop or state.epoch > params.num_epochs
        state.csv_rows = metrics.rows
        write_checkpoint(params, ddp_model, optimizer, schedule, state, exp_dir / f"epoch-{state.epoch - 1}.pt")
        if params.rank == 0 and params.keep_last_epochs > 0:
            _remove_epoch_files_before(exp_dir, state.epoch - params.keep_last_epochs)
        if state.finished and params.rank == 0:
            _write_final(params, model, state, exp_dir)
        write_checkpoint(params, ddp_model, optimizer, schedule, state, ckpt_path)
    if state.finished and params.rank == 0 and not final_path.is_file():
        _write_final(params, model, state, exp_dir)  # a finished run whose final.pt was removed


def _remove_epoch_files_before(exp_dir: Path, first_kept: int) -> None:
    """Delete epoch-N.pt for every N < first_kept (also those a killed run or another --keep-last-epochs left)."""
    for path in exp_dir.glob("epoch-*.pt"):
        number = path.stem.removeprefix("epoch-")
        if number.isdigit() and int(number) < first_kept:
            path.unlink(missing_ok=True)


def _write_final(params: AttributeDict, model: FrameClassifier, state: AttributeDict, exp_dir: Path) -> None:
    """final.pt: the best model under early stopping, else the last one."""
    if params.early_stopping_patience > 0 and (exp_dir / "best.pt").is_file():
        FrameClassifier.load(exp_dir / "best.pt").save(exp_dir / "final.pt", epoch=state.best_epoch,
                                                       dev_accuracy=state.best_dev_acc)
    else:
        model.save(exp_dir / "final.pt", epoch=state.epoch - 1)
    log.info("wrote %s (best dev accuracy %.4f at epoch %d)", exp_dir / "final.pt", state.best_dev_acc, state.best_epoch)
