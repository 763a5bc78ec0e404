"""Training one specialist with the project's trainer (`train` of asr_kd.train.train, with TrainHooks).

The specialist sees the generalist's frame banks through a "view": a bank directory whose features,
utterance offsets and ids are links to the original files and whose labels are remapped onto S + dustbin
(outside S -> |S|). The trainer then needs no label map; two of its hooks do the rest: `train_frames_fn`
resamples each epoch's frames to half from S, half from the rest (paper), and `soft_target_transform`
collapses the teacher's (generalist's or ensemble's) distributions onto S + dustbin, where they act as
a regulariser beside the hard labels. After training the dustbin logit is corrected for the resampling
and the model is saved with its class set (specialist.pt). Corrections: "paper" adds the log of the
oversampling of S relative to the dustbin (exact for hard labels alone); "match" (default) shifts it so
that the mean dustbin probability over a sample of natural training frames equals the share of frames
outside S - the soft-target term is not biased by resampling, so with it the paper's shift overshoots;
"none" leaves it.

Soft targets are best taken at T = 1 here: collapsing onto S + dustbin does not commute with the
temperature (the dustbin logit learnt at T is T log sum_j exp(z_j / T), above the T = 1 value
log sum_j exp(z_j)), so at T > 1 the specialist's dustbin comes out too probable at T = 1.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from asr_kd.data.frame_bank import MANIFEST, FrameBank
from asr_kd.distill.specialists.model import (dustbin_log_correction, init_specialist, load_specialist,
                                             matched_dustbin_correction, save_specialist)
from asr_kd.distill.specialists.sets import collapse, collapse_map
from asr_kd.models.frame_classifier import FrameClassifier
from asr_kd.models.shapes import NetShape
from asr_kd.train.train import TrainConfig, TrainHooks, train
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)

SPECIALIST_CHECKPOINT = "specialist.pt"


def write_bank_view(bank_dir: Path, classes: np.ndarray, out_dir: Path) -> FrameBank:
    """A frame bank sharing `bank_dir`'s features whose labels are mapped onto S + dustbin (resumable)."""
    if (out_dir / MANIFEST).is_file():
        return FrameBank.load(out_dir)
    if not (bank_dir / MANIFEST).is_file():
        raise InputError(f"{bank_dir}: not a frame bank (no {MANIFEST})")
    manifest = read_json(bank_dir / MANIFEST)
    cmap = collapse_map(classes, int(manifest["num_classes"])).numpy()
    labels = np.load(bank_dir / "labels.npy")
    if labels.size and labels.max() >= cmap.size:
        raise InputError(f"{bank_dir}: label {int(labels.max())} outside its {cmap.size} classes")
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("feats.npy", "utt_offsets.npy", "cut_ids.txt"):
        os.symlink((bank_dir / name).resolve(), tmp / name)
    np.save(tmp / "labels.npy", cmap[labels].astype(np.int32))
    digest = hashlib.sha256(np.asarray(classes, dtype="<i8").tobytes()).hexdigest()[:16]
    manifest.update(num_classes=len(classes) + 1, checksum=f"{manifest['checksum']}:specialist-{digest}",
                    specialist_view_of=str(bank_dir.resolve()))
    manifest.pop("content_sha256", None)  # its labels are mapped; its features are verified when bank_dir loads
    atomic_write_json(tmp / MANIFEST, manifest)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return FrameBank.load(out_dir)


def resample_frames(labels: np.ndarray, frames: np.ndarray, dustbin: int, special_fraction: float,
                    seed: int, max_frames: int = 0) -> tuple[np.ndarray, float]:
    """Frames of S plus a seeded draw from the rest so that S makes up `special_fraction`.

    All frames of S are kept unless that makes more than `max_frames` (0: no limit) in all; then a
    seeded sample of S is. Returns the frame indices and the natural share of S among `frames`.
    """
    in_s = labels[frames] != dustbin
    special, rest = frames[in_s], frames[~in_s]
    if special.size == 0 or rest.size == 0:
        raise InputError(f"the training frames hold {special.size} frames of the specialist's classes and "
                         f"{rest.size} others; a specialist needs both")
    rng = np.random.default_rng(seed)
    natural = special.size / frames.size
    if max_frames > 0 and special.size > max_frames * special_fraction:
        special = rng.choice(special, size=max(1, int(max_frames * special_fraction)), replace=False)
    want = int(round(special.size * (1 - special_fraction) / special_fraction))
    drawn = rng.choice(rest, size=want, replace=want > rest.size)
    return np.sort(np.concatenate([special, drawn])), natural


@dataclass
class SpecialistTraining:
    """How to train the specialists: trainer options plus the resampling and the dustbin fit."""

    num_epochs: int = 2
    batch_size: int = 512
    lr: float = 0.05
    optimizer: str = "sgd"
    lr_schedule: str = "newbob"
    temperature: float = 1.0
    hard_weight: float = 0.5
    special_fraction: float = 0.5
    max_frames: int = 0
    dustbin_correction: str = "match"
    fit_frames: int = 10000
    seed: int = 1
    device: str = "cpu"
    progress_bar: bool = True


def train_specialist(generalist_path: Path, classes: np.ndarray, train_bank_dir: Path, dev_bank_dir: Path,
                     out_dir: Path, opts: SpecialistTraining, teacher_paths: Sequence[Path] = ()) -> Path:
    """Train the specialist of `classes` into out_dir/specialist.pt (resumes; skips a finished one)."""
    final = out_dir / SPECIALIST_CHECKPOINT
    generalist = FrameClassifier.load(generalist_path).eval()
    num_classes = generalist.config.num_outputs
    if final.is_file():
        _, done = load_specialist(final, num_classes)
        if not np.array_equal(done, np.sort(classes)):
            raise InputError(f"{final}: trained for another class set than the one given ({len(done)} vs "
                             f"{len(classes)} classes); remove {out_dir} or use the sets file it was made from")
        log.info("%s exists, skipping", final)
        return final
    classes = np.sort(np.asarray(classes, dtype=np.int64))
    train_view = write_bank_view(train_bank_dir, classes, out_dir / "bank" / "train")
    write_bank_view(dev_bank_dir, classes, out_dir / "bank" / "dev")
    if train_view.num_classes != len(classes) + 1:
        raise InputError(f"{train_bank_dir}: the bank view has {train_view.num_classes} classes, expected "
                         f"{len(classes) + 1}")
    labels = train_view.labels.cpu().numpy()
    all_frames = np.arange(train_view.num_frames, dtype=np.int64)
    resampled, natural = resample_frames(labels, all_frames, len(classes), opts.special_fraction, opts.seed,
                                         opts.max_frames)

    init_path = out_dir / "init.pt"
    if not init_path.is_file():
        rng = np.random.default_rng(opts.seed)
        sample = torch.as_tensor(rng.choice(resampled, size=min(opts.fit_frames, resampled.size), replace=False))
        windows = train_view.splice(sample, generalist.left_context, generalist.right_context)
        spec, fit = init_specialist(generalist, classes, windows)
        log.info("%s: dustbin row fitted on %d frames: RMS logit error %.3f (least squares); KL(generalist "
                 "collapsed || specialist) %.4f -> %.4f nats (L-BFGS)", out_dir, sample.numel(),
                 fit["logit_rmse_lstsq"], fit["kl_lstsq"], fit["kl"])
        spec.save(init_path, dustbin_fit=fit)

    cfg = generalist.config
    config = TrainConfig(
        exp_dir=out_dir / "train", train_bank=out_dir / "bank" / "train", dev_bank=out_dir / "bank" / "dev",
        init_from=init_path, model_shape=str(NetShape(cfg.num_layers, cfg.hidden_dim)),
        left_context=cfg.left_context, right_context=cfg.right_context, activation=cfg.activation,
        dropout=cfg.dropout, norm=cfg.norm, input_norm=cfg.input_norm, input_lifter=cfg.input_lifter,
        num_epochs=opts.num_epochs, batch_size=opts.batch_size, lr=opts.lr, optimizer=opts.optimizer,
        lr_schedule=opts.lr_schedule, seed=opts.seed, device=opts.device, temperature=opts.temperature,
        hard_weight=opts.hard_weight, teacher_checkpoints=list(teacher_paths or [generalist_path]),
        progress_bar=opts.progress_bar)
    cmap = collapse_map(classes, num_classes)
    final_path = train(config, TrainHooks(train_frames_fn=lambda _bank, _frames: resampled,
                                          soft_target_transform=lambda probs: collapse(probs, cmap)))

    model = FrameClassifier.load(final_path)
    paper = dustbin_log_correction(opts.special_fraction, natural)
    if opts.dustbin_correction == "paper":
        correction = paper
    elif opts.dustbin_correction == "match":
        sample = torch.as_tensor(np.random.default_rng(opts.seed + 1).choice(
            train_view.num_frames, size=min(opts.fit_frames, train_view.num_frames), replace=False))
        with torch.no_grad():
            logits = model(train_view.splice(sample, cfg.left_context, cfg.right_context)).double()
        delta = logits[:, -1] - logits[:, :-1].logsumexp(-1)
        correction = matched_dustbin_correction(delta, 1.0 - natural)
    elif opts.dustbin_correction == "none":
        correction = 0.0
    else:
        raise InputError(f"dustbin correction must be paper, match or none, got {opts.dustbin_correction!r}")
    with torch.no_grad():
        model.output.bias[-1] += correction
        # Priors of S + dustbin from the natural data (the trainer's came from the resampled frames).
        model.set_priors(np.bincount(labels, minlength=len(classes) + 1))
    save_specialist(model, final, classes, num_classes, natural_fraction=natural,
                    special_fraction=opts.special_fraction, dustbin_log_correction=correction,
                    dustbin_correction=opts.dustbin_correction, paper_dustbin_log_correction=paper,
                    generalist=str(generalist_path))
    log.info("%s: |S| = %d, S holds %.2f%% of the training frames, dustbin logit %+.3f", final, len(classes),
             100 * natural, correction)
    return final
