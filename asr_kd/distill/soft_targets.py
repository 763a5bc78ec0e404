"""Stored soft targets: a teacher's top-k posteriors at temperature T for every frame of a bank.

Layout of a store directory (rows in the frame bank's global frame order):

    probs.npy       (num_frames, k) float16  the teacher's k largest probabilities at T, raw
                                              (not renormalised), in decreasing order
    class_ids.npy   (num_frames, k) int16    their class ids (int32 when num_classes >= 32768)
    manifest.json   teacher checkpoints (path + sha256), mean, temperature, k, num_frames,
                    num_classes, frame-bank checksum, sha256 of the two arrays, top-k mass stats

The manifest is written last: a directory without one is unfinished, and `write` resumes it
from the last completed chunk (`progress.json`).

Tail: the top-k rows hold mass m <= 1. `lookup` turns them into a dense distribution:
  * tail="renormalise" (default): divide by m. The dropped tail's mass is spread nowhere, and a
    target summing to m < 1 would shrink the soft term's gradient by m (d/dz = T (m q - p)) and
    tilt the soft/hard balance frame by frame; renormalising keeps it a proper distribution
    with the teacher's ranking and ratios among its k best classes.
  * tail="uniform": keep the top-k as stored and put 1 - m uniformly on the other C - k
    classes. This keeps the teacher's total tail mass, which matters at high T where the tail
    is heavy, at the price of flattening the tail's shape.

Size per hour of audio (360,000 frames at 10 ms), k * (2 + id bytes) bytes per frame:

    k    int16 ids (C < 32768)    int32 ids
    10        14.4 MB                21.6 MB
    20        28.8 MB                43.2 MB
    50        72.0 MB               108.0 MB

against 10.1 GB/hour for dense fp16 posteriors over 14,000 classes (100 h, k = 20: 2.9 GB).
`bench/bench_soft_targets.py` prints the same table.
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

from asr_kd.distill.ensemble import EnsembleTeacher, average_posteriors, file_sha256
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json, read_json

__all__ = ["SoftTargetStore", "TailMode", "frame_bank_checksum", "store_bytes_per_frame", "FRAMES_PER_HOUR"]

log = logging.getLogger(__name__)

TailMode = Literal["renormalise", "uniform"]
FRAMES_PER_HOUR = 360_000
FORMAT_VERSION = 1
_PROBS, _IDS, _MANIFEST, _PROGRESS = "probs.npy", "class_ids.npy", "manifest.json", "progress.json"
_PARTIAL_PROBS, _PARTIAL_IDS = "probs.partial.npy", "class_ids.partial.npy"


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


def _teacher_record(teacher: EnsembleTeacher) -> dict[str, Any]:
    if hasattr(teacher, "manifest_record"):  # a MixedTeacher (GMM members: asr_kd.distill.gmm_teacher)
        return teacher.manifest_record()
    record: dict[str, Any] = {"mean": teacher.mean, "num_members": teacher.num_members}
    if teacher.weights is not None:  # absent for equal weights: older stores stay valid
        record["weights"] = list(teacher.weights)
    if teacher.checkpoints:
        record["checkpoints"] = list(teacher.checkpoints)
    else:
        record["weights_sha256"] = teacher.weights_sha256()
    return record


def _teacher_matches(recorded: dict[str, Any], expect: EnsembleTeacher | Sequence[str | os.PathLike]) -> bool:
    """Same members (order-free: the mean does not depend on it) and, for a teacher, same mean."""
    if hasattr(expect, "manifest_record"):
        return expect.manifest_record() == recorded
    if isinstance(expect, EnsembleTeacher):
        if expect.mean != recorded.get("mean") or expect.weights != recorded.get("weights"):
            return False
        if not expect.checkpoints:
            return recorded.get("weights_sha256") == expect.weights_sha256()
        shas = [c["sha256"] for c in expect.checkpoints]
    else:
        missing = [str(p) for p in expect if not (Path(p).is_file() or (Path(p) / "final.mdl").is_file())]
        if missing:
            raise InputError(f"expected teacher checkpoints not found: {', '.join(missing)}")
        # A GMM teacher is a system directory, identified by its final.mdl.
        shas = [file_sha256(Path(p) / "final.mdl" if Path(p).is_dir() else p) for p in expect]
    recorded_shas = [c["sha256"] for c in recorded.get("checkpoints", []) + recorded.get("gmm_teachers", [])]
    return sorted(shas) == sorted(recorded_shas)


def _array_stats(probs: np.ndarray, class_ids: np.ndarray, rows: int = 1 << 20) -> dict[str, Any]:
    """sha256 over both arrays' bytes, and the mean / min top-k mass, in one pass."""
    h = hashlib.sha256()
    total, low = 0.0, float("inf")
    for start in range(0, probs.shape[0], rows):
        h.update(np.ascontiguousarray(probs[start:start + rows]).tobytes())
        mass = probs[start:start + rows].astype(np.float64).sum(axis=1)
        total += float(mass.sum())
        low = min(low, float(mass.min()))
    for start in range(0, class_ids.shape[0], rows):
        h.update(np.ascontiguousarray(class_ids[start:start + rows]).tobytes())
    n = max(probs.shape[0], 1)
    return {"sha256": h.hexdigest(), "mean_topk_mass": total / n, "min_topk_mass": low if probs.shape[0] else 0.0}


@dataclass
class SoftTargetStore:
    """Top-k teacher posteriors per frame, memory-mapped; `lookup` gives dense (B, C) targets."""

    directory: Path
    manifest: dict[str, Any]
    probs: np.ndarray
    class_ids: np.ndarray
    tail: TailMode = "renormalise"
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

    @classmethod
    @torch.no_grad()
    def write(
        cls,
        teacher: EnsembleTeacher,
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
    ) -> "SoftTargetStore":
        """Run `teacher` over every frame of `frame_bank` and store its top-k at `temperature`.

        Streams in batches of `batch_size` frames; every `chunk_frames` frames the arrays are
        flushed and progress recorded, so an interrupted run resumes there. A finished store
        with the same settings is loaded instead of recomputed; one with other settings is an
        InputError (remove the directory to rewrite it). `context` = (left, right) defaults to
        the members' configs; `amp` (default: on for CUDA) runs the members under bf16 autocast.
        """
        out_dir = Path(out_dir)
        device = torch.device(device)
        num_frames, num_classes = int(frame_bank.num_frames), int(frame_bank.num_classes)
        if temperature <= 0:
            raise InputError(f"temperature must be > 0, got {temperature}")
        if not 1 <= k <= num_classes:
            raise InputError(f"top-k must be in [1, {num_classes}] (the bank's classes), got {k}")
        left, right = context if context is not None else teacher.context
        amp = device.type == "cuda" if amp is None else amp
        settings = {
            "format_version": FORMAT_VERSION,
            "teacher": _teacher_record(teacher),
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
        partial_probs, partial_ids = out_dir / _PARTIAL_PROBS, out_dir / _PARTIAL_IDS
        if progress_path.is_file() and partial_probs.is_file() and partial_ids.is_file():
            progress = read_json(progress_path)
            if progress.get("settings") == settings:
                done = int(progress["frames_done"])
                log.info("%s: resuming soft targets at frame %d of %d", out_dir, done, num_frames)
        if done:
            probs = np.lib.format.open_memmap(partial_probs, mode="r+")
            ids = np.lib.format.open_memmap(partial_ids, mode="r+")
        else:
            progress_path.unlink(missing_ok=True)
            probs = np.lib.format.open_memmap(partial_probs, mode="w+", dtype=np.float16, shape=(num_frames, k))
            ids = np.lib.format.open_memmap(
                partial_ids, mode="w+", dtype=_id_dtype(num_classes), shape=(num_frames, k)
            )

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
            for start in range(chunk_start, chunk_end, batch_size):
                end = min(start + batch_size, chunk_end)
                idx = torch.arange(start, end, device=bank_device)
                x = frame_bank.splice(idx, left, right).to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    if getattr(teacher, "uses_frame_index", False):  # GMM members score bank frames
                        member_logits = teacher.member_logits(x, frame_idx=idx)
                    else:
                        member_logits = teacher.member_logits(x)
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
                bar.update(end - start)
            probs[chunk_start:chunk_end] = chunk_p.cpu().numpy()
            ids[chunk_start:chunk_end] = chunk_i.cpu().numpy()
            probs.flush()
            ids.flush()
            atomic_write_json(progress_path, {"settings": settings, "frames_done": chunk_end})
        bar.close()

        stats = _array_stats(probs, ids)
        del probs, ids  # close the memmaps before renaming their files
        os.replace(partial_probs, out_dir / _PROBS)
        os.replace(partial_ids, out_dir / _IDS)
        manifest = dict(settings)
        manifest.update(
            arrays_sha256=stats["sha256"],
            mean_topk_mass=stats["mean_topk_mass"],
            min_topk_mass=stats["min_topk_mass"],
            stored="raw top-k probabilities at the temperature, not renormalised; see lookup's tail",
        )
        atomic_write_json(out_dir / _MANIFEST, manifest)
        progress_path.unlink(missing_ok=True)
        log.info(
            "%s: %d frames, top-%d at T=%g, mean top-k mass %.4f",
            out_dir, num_frames, k, temperature, stats["mean_topk_mass"],
        )
        return cls.load(out_dir)

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        expect_temperature: float | None = None,
        expect_teacher: EnsembleTeacher | Sequence[str | os.PathLike] | None = None,
        expect_frame_bank_checksum: str | None = None,
        *,
        tail: TailMode = "renormalise",
        device: str | torch.device | None = None,
        verify_checksum: bool = False,
    ) -> "SoftTargetStore":
        """Open a store; an `expect_*` that disagrees with the manifest is an InputError naming it.

        `expect_teacher` is the member checkpoint paths (compared by sha256) or a teacher.
        `device` keeps both arrays resident there (k * 4 bytes per frame), so lookups never
        touch the host; without it lookups gather rows from the memory-mapped files.
        """
        directory = Path(directory)
        if tail not in ("renormalise", "uniform"):
            raise InputError(f"tail must be 'renormalise' or 'uniform', got {tail!r}")
        if not (directory / _MANIFEST).is_file():
            raise InputError(f"{directory}: no {_MANIFEST}; not a finished soft-target store")
        manifest = read_json(directory / _MANIFEST)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{directory}: format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}")
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
        probs = np.load(directory / _PROBS, mmap_mode="r")
        class_ids = np.load(directory / _IDS, mmap_mode="r")
        shape = (manifest["num_frames"], manifest["k"])
        for name, arr, dtype in ((_PROBS, probs, manifest["probs_dtype"]), (_IDS, class_ids, manifest["class_ids_dtype"])):
            if arr.shape != shape or arr.dtype.name != dtype:
                raise InputError(f"{directory / name}: shape {arr.shape} {arr.dtype}, manifest says {shape} {dtype}")
        if verify_checksum and _array_stats(probs, class_ids)["sha256"] != manifest["arrays_sha256"]:
            raise InputError(f"{directory}: arrays_sha256 does not match the stored arrays (corrupt store)")
        store = cls(directory, manifest, probs, class_ids, tail)
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
        top_p = top_p.to(device, non_blocking=True).float()
        top_i = top_i.to(device, non_blocking=True).long()
        mass = top_p.sum(dim=-1, keepdim=True)
        rows = top_p.shape[0]
        if self.tail == "renormalise":
            dense = torch.zeros(rows, self.num_classes, device=device)
            return dense.scatter_(1, top_i, top_p / mass)
        others = max(self.num_classes - self.k, 1)
        dense = ((1.0 - mass).clamp_min(0.0) / others).expand(rows, self.num_classes).contiguous()
        return dense.scatter_(1, top_i, top_p)

