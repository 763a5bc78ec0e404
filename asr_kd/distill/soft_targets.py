"""Stored soft targets: a teacher's top-k posteriors at temperature T for every frame of a bank.

Layout of a store directory (rows in the frame bank's global frame order):

    probs.npy       (num_frames, k) float16  the teacher's k largest probabilities at T, raw
                                              (not renormalised), in decreasing order
    class_ids.npy   (num_frames, k) int16    their class ids (int32 when num_classes >= 32768)
    kept_mass.npy   (num_frames,) float32    the teacher's mass on the k classes (before fp16)
    manifest.json   teacher checkpoints (path + sha256), mean, temperature, k, num_frames,
                    num_classes, frame-bank checksum, sha256 of the arrays, kept-mass stats,
                    the tail `lookup` uses, and the store's measured fidelity (below)

The manifest is written last: a directory without one is unfinished, and `write` resumes it
from the last completed chunk (`progress.json`).

Verification: `load` checks the arrays' shapes and dtypes always, and their sha256 against the
manifest once: `verified.json` beside them records the checksum with each array's size and mtime,
and later loads of unchanged files skip the hash (`write` records its own arrays). A mismatch is
an InputError naming the store.

Tail: the top-k rows hold mass m <= 1. `lookup` turns them into a dense distribution:
  * tail="uniform" (the default of stores written now): keep the top-k as stored and put 1 - m
    uniformly on the other C - k classes. The target keeps the teacher's entropy budget and its
    probability on every kept class; only the shape of the tail is flattened.
  * tail="renormalise" (stores of format 1): divide by m. A proper distribution with the teacher's
    ranking among its k best classes, but sharper than the teacher: at T=2 over 1,500 tied states
    top-20 keeps ~66% of the mass, and the renormalised target raises the aligned label's
    probability from 0.18 to 0.25 - the student learns another teacher.
Fidelity: after writing, a sample of frames is scored by the dense teacher in fp32 and the
soft-target loss T^2 CE(p, q) of each member q (stand-ins for a student near the end of training)
is compared against the stored rows' (top-k, fp16, computed in the teacher's precision), per tail;
the manifest records the relative loss error and the L1 distance |p - p_stored|, and `asr-kd train`
refuses a store that keeps too little mass.

Size per hour of audio (360,000 frames at 10 ms), k * (2 + id bytes) bytes per frame:

    k    int16 ids (C < 32768)    int32 ids
    10        14.4 MB                21.6 MB
    20        28.8 MB                43.2 MB
    50        72.0 MB               108.0 MB

   200       288.0 MB               432.0 MB

against 10.1 GB/hour for dense fp16 posteriors over 14,000 classes (100 h, k = 20: 2.9 GB). The
kept-mass array adds 1.4 MB per hour.
`bench/bench_soft_targets.py` prints the same table.

`make_soft_targets(SoftTargetConfig(...))` loads a teacher (checkpoints and/or GMM systems), picks k
and writes a store: what `asr-kd make-soft-targets` runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from asr_kd.data.frame_bank import FrameBank
from asr_kd.distill.ensemble import EnsembleTeacher, MeanType, average_posteriors, file_sha256
from asr_kd.distill.gmm_teacher import MixedTeacher, is_gmm_system
from asr_kd.distill.teacher import FrameTeacher
from asr_kd.utils.device import AmpMode, autocast, bf16_is_fast, resolve_device, use_bf16
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json, read_json
from asr_kd.utils.logging import setup_logging
from asr_kd.utils.safe_files import trust_pickle
from asr_kd.utils.verified import record_verified, was_verified

__all__ = ["SoftTargetStore", "SoftTargetConfig", "make_soft_targets", "TailMode", "TAIL_MODES", "choose_top_k",
           "dense_targets", "frame_bank_checksum", "measure_fidelity", "store_bytes_per_frame", "FRAMES_PER_HOUR"]

log = logging.getLogger(__name__)

TailMode = Literal["uniform", "renormalise"]
FRAMES_PER_HOUR = 360_000
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_PROBS, _IDS, _MASS, _MANIFEST, _PROGRESS = "probs.npy", "class_ids.npy", "kept_mass.npy", "manifest.json", "progress.json"
_PARTIAL_PROBS, _PARTIAL_IDS, _PARTIAL_MASS = "probs.partial.npy", "class_ids.partial.npy", "kept_mass.partial.npy"
TAIL_MODES: tuple[str, ...] = ("uniform", "renormalise")
FIDELITY_FRAMES = 16384
# `choose_top_k` keeps this much of the teacher's mass at least: a margin over `asr-kd train --min-kept-mass` (0.9).
AUTO_MIN_KEPT_MASS = 0.95
# Candidate k for `choose_top_k`, smallest first.
K_LADDER = (20, 50, 100, 200, 300, 400, 600, 800, 1200, 1600, 2400, 3200, 4800, 6400)


def _id_dtype(num_classes: int) -> np.dtype:
    return np.dtype(np.int16) if num_classes < 32768 else np.dtype(np.int32)


def store_bytes_per_frame(k: int, num_classes: int) -> int:
    """Bytes one frame takes in a store: k fp16 probabilities plus k class ids."""
    return k * (2 + _id_dtype(num_classes).itemsize)


def frame_bank_checksum(frame_bank: Any) -> str:
    """The bank's own checksum (its manifest's "checksum") when it has one, else sha256 of its labels.

    The fallback identifies the alignment and frame count a store was made for; it cannot see
    a change of features with identical labels.
    """
    own = getattr(frame_bank, "manifest", {}).get("checksum")
    if isinstance(own, str) and own:
        return own
    labels = frame_bank.labels
    labels = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    h = hashlib.sha256(f"{frame_bank.num_frames}:{frame_bank.num_classes}:".encode())
    h.update(np.ascontiguousarray(labels.astype(np.int64)).tobytes())
    return "labels-sha256:" + h.hexdigest()


def _teacher_matches(recorded: dict[str, Any], expect: FrameTeacher | Sequence[str | os.PathLike]) -> bool:
    """Same members (order-free: the mean does not depend on it) and, for a teacher, same mean."""
    if isinstance(expect, EnsembleTeacher):
        if expect.mean != recorded.get("mean") or expect.weights != recorded.get("weights"):
            return False
        if not expect.checkpoints:
            return recorded.get("weights_sha256") == expect.weights_sha256()
        shas = [c["sha256"] for c in expect.checkpoints]
    elif isinstance(expect, FrameTeacher):  # e.g. a MixedTeacher: its record in order
        return expect.manifest_record() == recorded
    else:
        missing = [str(p) for p in expect if not (Path(p).is_file() or (Path(p) / "final.mdl").is_file())]
        if missing:
            raise InputError(f"expected teacher checkpoints not found: {', '.join(missing)}")
        # A GMM teacher is a system directory, identified by its final.mdl.
        shas = [file_sha256(Path(p) / "final.mdl" if Path(p).is_dir() else p) for p in expect]
    recorded_shas = [c["sha256"] for c in recorded.get("checkpoints", []) + recorded.get("gmm_teachers", [])]
    return sorted(shas) == sorted(recorded_shas)


def _array_stats(probs: np.ndarray, class_ids: np.ndarray, kept_mass: np.ndarray | None = None,
                 rows: int = 1 << 20) -> dict[str, Any]:
    """sha256 over the arrays' bytes (kept_mass last, when given) and the kept mass's mean / 10th percentile / min."""
    h = hashlib.sha256()
    for arr in (probs, class_ids) + ((kept_mass,) if kept_mass is not None else ()):
        for start in range(0, arr.shape[0], rows):
            h.update(np.ascontiguousarray(arr[start:start + rows]).tobytes())
    if kept_mass is None:  # format 1: the row sums of the fp16 probabilities
        kept_mass = np.concatenate([probs[s:s + rows].astype(np.float64).sum(axis=1)
                                    for s in range(0, probs.shape[0], rows)] or [np.zeros(0)])
    if kept_mass.shape[0] == 0:
        return {"sha256": h.hexdigest(), "mean_topk_mass": 0.0, "p10_topk_mass": 0.0, "min_topk_mass": 0.0}
    return {"sha256": h.hexdigest(), "mean_topk_mass": float(np.mean(kept_mass, dtype=np.float64)),
            "p10_topk_mass": float(np.percentile(kept_mass, 10)), "min_topk_mass": float(np.min(kept_mass))}


def dense_targets(top_p: Tensor, top_i: Tensor, num_classes: int, tail: str) -> Tensor:
    """Dense (B, C) float32 distributions from top-k probabilities (B, k) and class ids (B, k) with a `tail` model.

    The tail's mass is 1 minus the stored (fp16) values' sum, so every row sums to 1.
    """
    top_p, top_i = top_p.float(), top_i.long()
    mass = top_p.sum(dim=-1, keepdim=True)
    rows = top_p.shape[0]
    if tail == "renormalise":
        dense = torch.zeros(rows, num_classes, device=top_p.device)
        return dense.scatter_(1, top_i, top_p / mass)
    others = max(num_classes - top_p.shape[1], 1)
    dense = ((1.0 - mass).clamp_min(0.0) / others).expand(rows, num_classes).contiguous()
    return dense.scatter_(1, top_i, top_p)


def _fidelity_sample(frame_bank: Any, frames: int, seed: int) -> Tensor:
    """Sorted indices of a seeded random sample of the bank's frames."""
    gen = torch.Generator().manual_seed(seed)
    n = int(frame_bank.num_frames)
    return torch.randperm(n, generator=gen)[:min(frames, n)].sort().values


@torch.no_grad()
def measure_fidelity(teacher: FrameTeacher, frame_bank: Any, temperature: float, ks: Sequence[int],
                     frames: int = FIDELITY_FRAMES, seed: int = 0, batch_size: int = 4096,
                     device: str | torch.device = "cpu", context: tuple[int, int] | None = None,
                     store: "SoftTargetStore | None" = None) -> dict[int, dict]:
    """How far top-k targets are from the dense fp32 teacher, for each k of `ks`, on a seeded sample of frames.

    The targets are the teacher's own top-k (fp16, as stored), or with `store` (whose k must be in `ks`)
    the stored rows themselves, which also carry any error of the precision they were computed in.
    For each tail model: the relative error of the soft-target loss T^2 CE(target, q_m) against the
    dense teacher's, with every member m's own distribution q_m at T as the probe (a student near
    convergence), summed over members; and the mean L1 distance |p - target| per frame (the soft
    term's gradient error is T/2 of it in L1). Returns {k: {"frames", "mean_kept_mass", "tails": {...}}}.
    """
    device = torch.device(device)
    left, right = context if context is not None else teacher.context
    idx_all = _fidelity_sample(frame_bank, frames, seed)
    bank_device = getattr(frame_bank, "device", torch.device("cpu"))

    def zero() -> Tensor:  # sums stay on the device: no host sync per batch, and no CPU += CUDA
        return torch.zeros((), dtype=torch.float64, device=device)

    dense_loss = zero()
    sums = {k: {"kept": zero(), **{f"loss_{t}": zero() for t in TAIL_MODES},
                **{f"l1_{t}": zero() for t in TAIL_MODES}} for k in ks}
    for start in range(0, idx_all.numel(), batch_size):
        idx = idx_all[start:start + batch_size].to(bank_device)
        x = frame_bank.splice(idx, left, right).to(device)
        with torch.autocast(device.type, enabled=False):  # the reference is the exact teacher
            member_logits = teacher.member_logits(x, frame_idx=idx).float()
        p = average_posteriors(member_logits, temperature, teacher.mean, weights=teacher.weights)
        log_q = torch.log_softmax(member_logits / temperature, dim=-1)  # (M, B, C)
        dense_loss += -(p * log_q).sum(dtype=torch.float64)
        for k in ks:
            if store is not None and k == store.k:
                rows = idx.cpu().numpy()
                top_p = torch.from_numpy(store.probs[rows]).to(device)
                top_i = torch.from_numpy(store.class_ids[rows]).to(device).long()
                kept = torch.from_numpy(np.asarray(store.kept_mass[rows])).to(device) if store.kept_mass is not None \
                    else top_p.float().sum(dim=-1)
            else:
                top_p, top_i = torch.topk(p, k, dim=-1)
                kept, top_p = top_p.sum(dim=-1), top_p.half()
            sums[k]["kept"] += kept.sum(dtype=torch.float64)
            for tail in TAIL_MODES:
                target = dense_targets(top_p, top_i, p.shape[1], tail)
                sums[k][f"loss_{tail}"] += -(target * log_q).sum(dtype=torch.float64)
                sums[k][f"l1_{tail}"] += (target - p).abs().sum(dtype=torch.float64)
    count = max(idx_all.numel(), 1)
    scale = dense_loss.abs().clamp_min(1e-30)
    probe = "each teacher member's own distribution at T; reference: the dense teacher in fp32"
    return {k: {"frames": int(idx_all.numel()), "probe": probe,
                "targets": "the stored rows" if store is not None and k == store.k else "the teacher's fp32 top-k in fp16",
                "mean_kept_mass": float(v["kept"] / count),
                "tails": {t: {"loss_rel_error": float((v[f"loss_{t}"] - dense_loss).abs() / scale),
                              "mean_l1": float(v[f"l1_{t}"] / count)} for t in TAIL_MODES}}
            for k, v in sums.items()}


def choose_top_k(teacher: FrameTeacher, frame_bank: Any, temperature: float, max_loss_error: float = 0.005,
                 device: str | torch.device = "cpu", batch_size: int = 4096, context: tuple[int, int] | None = None,
                 candidates: Sequence[int] = K_LADDER, min_kept_mass: float = AUTO_MIN_KEPT_MASS) -> tuple[int, dict]:
    """The smallest k of `candidates` (capped at the classes) whose uniform-tail targets keep the soft loss within
    `max_loss_error` of the dense teacher's and keep at least `min_kept_mass` of its mass on the fidelity sample
    (with a margin over the trainer's refusal threshold); and that k's fidelity record."""
    num_classes = int(frame_bank.num_classes)
    ladder = sorted({min(k, num_classes) for k in candidates})
    fidelity = measure_fidelity(teacher, frame_bank, temperature, ladder, device=device, batch_size=batch_size,
                                context=context)
    for k in ladder:
        f = fidelity[k]
        if f["tails"]["uniform"]["loss_rel_error"] <= max_loss_error and f["mean_kept_mass"] >= min_kept_mass:
            return k, f
    return ladder[-1], fidelity[ladder[-1]]


@dataclass
class SoftTargetStore:
    """Top-k teacher posteriors per frame, memory-mapped; `lookup` gives dense (B, C) targets."""

    directory: Path
    manifest: dict[str, Any]
    probs: np.ndarray
    class_ids: np.ndarray
    kept_mass: np.ndarray | None = None  # None for format-1 stores (the row sums stand in)
    tail: TailMode = "uniform"
    _resident: tuple[Tensor, Tensor] | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        """Frames in the store (the frame bank's)."""
        return int(self.manifest["num_frames"])

    @property
    def num_classes(self) -> int:
        """Classes of the dense distributions `lookup` returns."""
        return int(self.manifest["num_classes"])

    @property
    def temperature(self) -> float:
        """Temperature the teacher's posteriors were taken at."""
        return float(self.manifest["temperature"])

    @property
    def k(self) -> int:
        """Probabilities stored per frame."""
        return int(self.manifest["k"])

    @property
    def mean_kept_mass(self) -> float:
        """Mean over frames of the teacher's probability mass on the stored k classes."""
        return float(self.manifest["mean_topk_mass"])

    def describe(self) -> str:
        """One line saying what teaches from this store, e.g. for a results table."""
        return (f"stored top-{self.k} of {self.num_classes} at T={self.temperature:g}, {self.tail} tail, "
                f"kept mass {100 * self.mean_kept_mass:.1f}% on average ({self.directory})")

    @classmethod
    @torch.no_grad()
    def write(
        cls,
        teacher: FrameTeacher,
        frame_bank: Any,
        out_dir: str | os.PathLike,
        temperature: float = 2.0,
        k: int = 20,
        batch_size: int = 4096,
        device: str | torch.device = "cpu",
        *,
        chunk_frames: int = 1 << 20,
        context: tuple[int, int] | None = None,
        amp: bool | None = None,
        fidelity_frames: int = FIDELITY_FRAMES,
    ) -> "SoftTargetStore":
        """Run `teacher` over every frame of `frame_bank` and store its top-k at `temperature`.

        Streams in batches of `batch_size` frames; every `chunk_frames` frames the arrays are
        flushed and progress recorded, so an interrupted run resumes there. A finished store
        with the same settings is loaded instead of recomputed; one with other settings is an
        InputError (remove the directory to rewrite it). `context` = (left, right) defaults to
        the members' configs; `amp` (default: where `bf16_is_fast`) runs the members under bf16 autocast.
        `fidelity_frames` frames are then scored densely for the manifest's fidelity record (0: none).
        """
        out_dir = Path(out_dir)
        device = torch.device(device)
        num_frames, num_classes = int(frame_bank.num_frames), int(frame_bank.num_classes)
        if temperature <= 0:
            raise InputError(f"temperature must be > 0, got {temperature}")
        if not 1 <= k <= num_classes:
            raise InputError(f"top-k must be in [1, {num_classes}] (the bank's classes), got {k}")
        left, right = context if context is not None else teacher.context
        amp = bf16_is_fast(device) if amp is None else amp
        settings = {
            "format_version": FORMAT_VERSION,
            "teacher": teacher.manifest_record(),
            "temperature": float(temperature),
            "k": int(k),
            "num_frames": num_frames,
            "num_classes": num_classes,
            "left_context": left,
            "right_context": right,
            "frame_bank_checksum": frame_bank_checksum(frame_bank),
            "probs_dtype": "float16",
            "class_ids_dtype": _id_dtype(num_classes).name,
        }
        if (out_dir / _MANIFEST).is_file():
            existing = read_json(out_dir / _MANIFEST)
            for key, value in settings.items():
                if existing.get(key) != value:
                    raise InputError(
                        f"{out_dir}: holds soft targets with another {key} ({existing.get(key)!r}, "
                        f"asked for {value!r}); remove the directory to rewrite it"
                    )
            log.info("%s: soft targets already complete, skipping", out_dir)
            return cls.load(out_dir)

        out_dir.mkdir(parents=True, exist_ok=True)
        done = 0
        progress_path = out_dir / _PROGRESS
        partials = (out_dir / _PARTIAL_PROBS, out_dir / _PARTIAL_IDS, out_dir / _PARTIAL_MASS)
        if progress_path.is_file() and all(p.is_file() for p in partials):
            progress = read_json(progress_path)
            if progress.get("settings") == settings:
                done = int(progress["frames_done"])
                log.info("%s: resuming soft targets at frame %d of %d", out_dir, done, num_frames)
        if done:
            probs, ids, kept = (np.lib.format.open_memmap(p, mode="r+") for p in partials)
        else:
            progress_path.unlink(missing_ok=True)
            probs = np.lib.format.open_memmap(partials[0], mode="w+", dtype=np.float16, shape=(num_frames, k))
            ids = np.lib.format.open_memmap(partials[1], mode="w+", dtype=_id_dtype(num_classes), shape=(num_frames, k))
            kept = np.lib.format.open_memmap(partials[2], mode="w+", dtype=np.float32, shape=(num_frames,))

        id_dtype = torch.int16 if ids.dtype == np.int16 else torch.int32
        teacher.to(device).eval()
        bank_device = getattr(frame_bank, "device", torch.device("cpu"))
        bar = tqdm(total=num_frames, initial=done, desc="soft targets", unit="frame", unit_scale=True)
        for chunk_start in range(done, num_frames, chunk_frames):
            chunk_end = min(chunk_start + chunk_frames, num_frames)
            # The chunk's top-k gathers on the device and crosses to the host once, so batches
            # queue up on a GPU without a host sync each.
            chunk_p = torch.empty(chunk_end - chunk_start, k, dtype=torch.float16, device=device)
            chunk_i = torch.empty(chunk_end - chunk_start, k, dtype=id_dtype, device=device)
            chunk_m = torch.empty(chunk_end - chunk_start, dtype=torch.float32, device=device)
            for start in range(chunk_start, chunk_end, batch_size):
                end = min(start + batch_size, chunk_end)
                idx = torch.arange(start, end, device=bank_device)
                x = frame_bank.splice(idx, left, right).to(device, non_blocking=True)
                with autocast(device, amp):
                    member_logits = teacher.member_logits(x, frame_idx=idx)
                p = average_posteriors(member_logits, temperature, teacher.mean, weights=teacher.weights,
                                       overwrite_input=True)
                if p.shape[1] != num_classes:
                    raise InputError(
                        f"teacher gives {p.shape[1]} classes but the frame bank has {num_classes}"
                    )
                # Top-k on the device: only k values per frame cross to the host.
                top_p, top_i = torch.topk(p, k, dim=-1)
                chunk_p[start - chunk_start:end - chunk_start] = top_p
                chunk_i[start - chunk_start:end - chunk_start] = top_i
                chunk_m[start - chunk_start:end - chunk_start] = top_p.sum(dim=-1)
                bar.update(end - start)
            probs[chunk_start:chunk_end] = chunk_p.cpu().numpy()
            ids[chunk_start:chunk_end] = chunk_i.cpu().numpy()
            kept[chunk_start:chunk_end] = chunk_m.cpu().numpy()
            for arr in (probs, ids, kept):
                arr.flush()
            atomic_write_json(progress_path, {"settings": settings, "frames_done": chunk_end})
        bar.close()

        stats = _array_stats(probs, ids, kept)
        fidelity = None
        if fidelity_frames > 0:
            written = cls(out_dir, {"k": k}, probs, ids, kept)
            fidelity = measure_fidelity(teacher, frame_bank, temperature, [k], frames=fidelity_frames,
                                        batch_size=batch_size, device=device, context=(left, right),
                                        store=written)[k]
            del written
        del probs, ids, kept  # close the memmaps before renaming their files
        for partial, name in zip(partials, (_PROBS, _IDS, _MASS)):
            os.replace(partial, out_dir / name)
        manifest = dict(settings)
        manifest.update(
            arrays_sha256=stats["sha256"],
            mean_topk_mass=stats["mean_topk_mass"],
            p10_topk_mass=stats["p10_topk_mass"],
            min_topk_mass=stats["min_topk_mass"],
            tail="uniform",
            teacher_precision="bf16 autocast" if amp else "fp32",
            fidelity=fidelity,
            stored="raw top-k probabilities at the temperature, not renormalised; see lookup's tail",
        )
        atomic_write_json(out_dir / _MANIFEST, manifest)
        record_verified(out_dir, (_PROBS, _IDS, _MASS), manifest["arrays_sha256"])
        progress_path.unlink(missing_ok=True)
        log.info("%s: %d frames, top-%d at T=%g, kept mass mean %.4f (10th percentile %.4f, min %.4f)",
                 out_dir, num_frames, k, temperature, stats["mean_topk_mass"], stats["p10_topk_mass"],
                 stats["min_topk_mass"])
        if fidelity is not None:
            log.info("%s: soft-loss error against the dense teacher on %d frames: %.2f%% with the uniform tail, "
                     "%.2f%% renormalised", out_dir, fidelity["frames"],
                     100 * fidelity["tails"]["uniform"]["loss_rel_error"],
                     100 * fidelity["tails"]["renormalise"]["loss_rel_error"])
        return cls.load(out_dir)

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        expect_temperature: float | None = None,
        expect_teacher: FrameTeacher | Sequence[str | os.PathLike] | None = None,
        expect_frame_bank_checksum: str | None = None,
        *,
        tail: TailMode | None = None,
        device: str | torch.device | None = None,
        verify_checksum: Literal["once", "always", "never"] = "once",
    ) -> "SoftTargetStore":
        """Open a store; an `expect_*` that disagrees with the manifest is an InputError naming it.

        `verify_checksum`: "once" hashes the arrays unless verified.json shows these very files
        (size, mtime) were verified before; "always" hashes them; "never" checks shapes only.

        `expect_teacher` is the member checkpoint paths (compared by sha256) or a teacher.
        `tail` defaults to the manifest's ("renormalise" for format-1 stores). `device` keeps
        the arrays resident there (k * 4 bytes per frame), so lookups never touch the host;
        without it lookups gather rows from the memory-mapped files.
        """
        directory = Path(directory)
        if tail is not None and tail not in TAIL_MODES:
            raise InputError(f"tail must be one of {', '.join(TAIL_MODES)}, got {tail!r}")
        if not (directory / _MANIFEST).is_file():
            raise InputError(f"{directory}: no {_MANIFEST}; not a finished soft-target store")
        manifest = read_json(directory / _MANIFEST)
        if manifest.get("format_version") not in _READABLE_VERSIONS:
            raise InputError(f"{directory}: format_version {manifest.get('format_version')!r}, "
                             f"this version reads {_READABLE_VERSIONS}")
        tail = tail or manifest.get("tail", "renormalise")
        if expect_temperature is not None and not np.isclose(manifest["temperature"], expect_temperature):
            raise InputError(
                f"{directory}: temperature is {manifest['temperature']:g}, expected {expect_temperature:g}"
            )
        if expect_teacher is not None and not _teacher_matches(manifest["teacher"], expect_teacher):
            raise InputError(f"{directory}: teacher differs from the expected one (checkpoints/mean in {_MANIFEST})")
        if expect_frame_bank_checksum is not None and manifest["frame_bank_checksum"] != expect_frame_bank_checksum:
            raise InputError(
                f"{directory}: frame_bank_checksum is {manifest['frame_bank_checksum']}, "
                f"expected {expect_frame_bank_checksum}"
            )
        try:
            probs = np.load(directory / _PROBS, mmap_mode="r")
            class_ids = np.load(directory / _IDS, mmap_mode="r")
            kept_mass = np.load(directory / _MASS, mmap_mode="r") if manifest["format_version"] >= 2 else None
        except (OSError, ValueError) as err:
            raise InputError(f"{directory}: damaged soft-target store ({err})") from err
        shape = (manifest["num_frames"], manifest["k"])
        arrays = [(_PROBS, probs, shape, manifest["probs_dtype"]), (_IDS, class_ids, shape, manifest["class_ids_dtype"])]
        if kept_mass is not None:
            arrays.append((_MASS, kept_mass, shape[:1], "float32"))
        for name, arr, want, dtype in arrays:
            if arr.shape != want or arr.dtype.name != dtype:
                raise InputError(f"{directory / name}: shape {arr.shape} {arr.dtype}, manifest says {want} {dtype}")
        names = [name for name, *_ in arrays]
        if verify_checksum == "always" or (verify_checksum == "once"
                                           and not was_verified(directory, names, manifest["arrays_sha256"])):
            if _array_stats(probs, class_ids, kept_mass)["sha256"] != manifest["arrays_sha256"]:
                raise InputError(f"{directory}: its arrays ({', '.join(names)}) do not match the manifest's "
                                 "arrays_sha256: a corrupt store; rebuild it (asr-kd make-soft-targets into a new "
                                 "directory)")
            record_verified(directory, names, manifest["arrays_sha256"])
        store = cls(directory, manifest, probs, class_ids, kept_mass, tail)
        if device is not None:
            store.to(device)
        return store

    def to(self, device: str | torch.device) -> "SoftTargetStore":
        """Keep the top-k arrays resident on `device` for lookups."""
        self._resident = (
            torch.from_numpy(np.array(self.probs)).to(device),
            torch.from_numpy(np.array(self.class_ids)).to(device),
        )
        return self

    def lookup(self, frame_idx: Tensor, device: str | torch.device | None = None) -> Tensor:
        """Dense teacher distributions (B, C) float32 for global frame indices `frame_idx` (B,)."""
        device = torch.device(device) if device is not None else frame_idx.device
        if self._resident is not None:
            res_probs, res_ids = self._resident
            idx = frame_idx.to(res_probs.device).long()
            top_p, top_i = res_probs[idx], res_ids[idx]
        else:
            idx_np = frame_idx.detach().cpu().numpy().astype(np.int64)
            top_p, top_i = torch.from_numpy(self.probs[idx_np]), torch.from_numpy(self.class_ids[idx_np])
        top_p = top_p.to(device, non_blocking=True)
        top_i = top_i.to(device, non_blocking=True)
        return dense_targets(top_p, top_i, self.num_classes, self.tail)


@dataclass
class SoftTargetConfig:
    """One store to make: a field per option of `asr-kd make-soft-targets`, same name and default (see its --help)."""

    teacher: list[Path]  # FrameClassifier checkpoints and/or GMM system directories (holding final.mdl)
    frame_bank: Path
    out_dir: Path
    temperature: float = 2.0
    top_k: int | str = "auto"  # or "auto": the smallest of K_LADDER within max_loss_error
    max_loss_error: float = 0.005
    mean: MeanType = "arithmetic"
    teacher_weights: list[float] | None = None
    gmm_acoustic_scale: float = 0.1
    gmm_cuts: Path | None = None  # default: the frame bank's source_cuts
    batch_size: int = 8192
    chunk_frames: int = 1 << 20
    device: str = "auto"
    amp: AmpMode = "auto"
    trust_pickle: bool = False


def make_soft_targets(config: SoftTargetConfig) -> SoftTargetStore:
    """Load the teacher, pick k and write the store of config.frame_bank (resumed, or loaded when finished)."""
    if config.temperature <= 0:
        raise InputError(f"--temperature must be > 0, got {config.temperature}")
    if config.batch_size < 1 or config.chunk_frames < 1:
        raise InputError("--batch-size and --chunk-frames must be positive")
    if config.teacher_weights is not None and len(config.teacher_weights) != len(config.teacher):
        raise InputError(f"--teacher-weights: {len(config.teacher_weights)} weights for "
                         f"{len(config.teacher)} --teacher checkpoints")
    setup_logging(Path(config.out_dir) / "log" / "make_soft_targets.log")
    with trust_pickle(config.trust_pickle):
        device = resolve_device(config.device)
        bank = FrameBank.load(config.frame_bank, device)
        if any(is_gmm_system(p) for p in config.teacher):
            mixed = MixedTeacher.load(config.teacher, device, mean=config.mean, weights=config.teacher_weights,
                                      acoustic_scale=config.gmm_acoustic_scale)
            mixed.attach(bank, *_gmm_cuts(config.gmm_cuts, bank))
            teacher: FrameTeacher = mixed
        else:
            teacher = EnsembleTeacher.load(config.teacher, device, mean=config.mean, weights=config.teacher_weights)
        amp = use_bf16(config.amp, device)
        if config.top_k == "auto":
            with autocast(device, amp):
                k, fidelity = choose_top_k(teacher, bank, config.temperature, config.max_loss_error, device,
                                           config.batch_size)
            log.info("--top-k auto: k=%d keeps %.2f%% of the mass, soft-loss error %.2f%% (bound %.2f%%)", k,
                     100 * fidelity["mean_kept_mass"], 100 * fidelity["tails"]["uniform"]["loss_rel_error"],
                     100 * config.max_loss_error)
        else:
            try:
                k = int(config.top_k)
            except ValueError as err:
                raise InputError(f"--top-k must be a positive integer or 'auto', got {config.top_k!r}") from err
            if k < 1:
                raise InputError(f"--top-k must be positive, got {k}")
        store = SoftTargetStore.write(teacher, bank, config.out_dir, config.temperature, min(k, bank.num_classes),
                                      config.batch_size, device, chunk_frames=config.chunk_frames, amp=amp)
    fidelity = store.manifest.get("fidelity", {}).get("tails", {}).get(store.tail, {})
    log.info("%s: %d frames, %d members, T=%g, top-%d keeps %.1f%% of the mass on average; soft-loss error "
             "against the dense teacher with the %s tail: %.2f%%", config.out_dir, store.num_frames,
             teacher.num_members, store.temperature, store.k, 100 * store.mean_kept_mass, store.tail,
             100 * fidelity.get("loss_rel_error", float("nan")))
    return store


def _gmm_cuts(path: Path | None, bank: FrameBank) -> tuple[Any, str]:
    """The cuts GMM teachers make their features from: `path`, else the bank's source_cuts; and their name."""
    from lhotse import CutSet  # only GMM teachers need lhotse here: kept off the trainer's import time

    if path is None:
        source = bank.manifest.get("source_cuts")
        if not source:
            raise InputError(f"{bank.directory}: records no source_cuts; give --gmm-cuts")
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{path}: the frame bank's source cuts are not found from here; give --gmm-cuts")
    if not path.is_file():
        raise InputError(f"{path}: no such cuts manifest (--gmm-cuts)")
    return CutSet.from_file(path), str(path)
