"""All frames of a split with their pdf-id labels in contiguous, memory-mapped arrays.

Layout of a bank directory (written once, atomically; `manifest.json` last):
  feats.npy        (N, D) float16, CMVN applied
  labels.npy       (N,)   int32 pdf-ids; UNLABELLED (-1) for frames of a transfer set that only a
                          teacher labels
  utt_offsets.npy  (U+1,) int64, utterance u owns frames [offsets[u], offsets[u+1])
  cut_ids.txt      U lines
  manifest.json    num_frames, feat_dim, num_classes, num_utterances, checksum, content_sha256, source_cuts, ...
`checksum` identifies the bank (soft-target stores record it); `content_sha256` is the sha256 of its
cut ids, labels and features, utterance by utterance (in version-2 banks both are that hash; version-1
banks hashed ids and labels only and are read without a content check). `load` verifies it once per
set of files (`asr_kd.utils.verified`): a damaged array is an InputError naming the bank.
Training draws random frame indices and gathers each frame's context window on the device with
one index op (`splice`), so no per-frame Python work or DataLoader sits in the training loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from asr_kd.data.cmvn import CmvnStats, normalised_features
from asr_kd.models.context import gather_context
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json, read_json
from asr_kd.utils.verified import record_verified, was_verified

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
BANK_VERSION = 2
_ARRAYS = ("feats.npy", "labels.npy", "utt_offsets.npy", "cut_ids.txt")
UNLABELLED = -1  # label of frames without an alignment (hard-label losses skip them)


def load_cmvn(cmvn: CmvnStats | str | os.PathLike | None) -> CmvnStats | None:
    """CMVN stats as given, or read from a `cmvn*.json` path; None stays None."""
    if cmvn is None or isinstance(cmvn, CmvnStats):
        return cmvn
    return CmvnStats.load(cmvn)


def cuts_features(cuts: Sequence[Any], cmvn: CmvnStats | None) -> Iterator[tuple[Any, np.ndarray]]:
    """(cut, features) of every cut, normalised by `cmvn` (speaker means over these cuts) when given."""
    if cmvn is not None:
        yield from normalised_features(cuts, cmvn)
    else:
        for cut in cuts:
            yield cut, cut.load_features()


def _cmvn_description(cmvn: CmvnStats | None, source: Any) -> dict[str, Any] | None:
    if cmvn is None:
        return None
    return {"source": str(source) if isinstance(source, (str, os.PathLike)) else type(cmvn).__name__,
            "mode": cmvn.mode, "mean": np.asarray(cmvn.mean, dtype=np.float64).tolist(),
            "std": np.asarray(cmvn.std, dtype=np.float64).tolist()}


class FrameBank:
    """Frames (N, D), labels (N,) and utterance boundaries of one split, resident on one device."""

    def __init__(self, directory: Path, manifest: dict[str, Any], feats: Tensor, labels: Tensor,
                 utt_offsets: Tensor, cut_ids: list[str], device: torch.device):
        self.directory = directory
        self.manifest = manifest
        self.feats = feats  # on `device` when it fits there, else on the host
        self.labels = labels
        self.utt_offsets = utt_offsets
        self.cut_ids = cut_ids
        self.device = device

    @property
    def num_frames(self) -> int:
        return int(self.manifest["num_frames"])

    @property
    def feat_dim(self) -> int:
        return int(self.manifest["feat_dim"])

    @property
    def num_classes(self) -> int:
        return int(self.manifest["num_classes"])

    @property
    def num_utterances(self) -> int:
        return len(self.cut_ids)

    @property
    def num_labelled_frames(self) -> int:
        """Frames with a pdf-id (the rest are UNLABELLED transfer frames)."""
        return int(self.manifest.get("num_labelled_frames", self.num_frames))

    def __repr__(self) -> str:
        return (f"FrameBank({str(self.directory)!r}, frames={self.num_frames}, utts={self.num_utterances}, "
                f"dim={self.feat_dim}, classes={self.num_classes}, store on {self.feats.device})")

    # ---------------------------------------------------------------- building
    @classmethod
    def build(cls, cuts: Any, out_dir: str | os.PathLike, cmvn: CmvnStats | str | os.PathLike | None = None,
              label_field: str = "pdf_ids", num_classes: int | None = None, overwrite: bool = False,
              unlabelled_cuts: Any = None) -> "FrameBank":
        """Bank from lhotse cuts (or a cuts manifest path) carrying features and a `label_field` array.

        `unlabelled_cuts` (cuts or a manifest path) add frames without alignments after them, labelled
        UNLABELLED: a transfer set that only a teacher labels. Skips the work when `out_dir` already
        holds a complete bank (unless `overwrite`).
        """
        out_dir = Path(out_dir)
        if (out_dir / MANIFEST).is_file() and not overwrite:
            log.info("frame bank %s exists, not rebuilding", out_dir)
            return cls.load(out_dir)
        labelled, source = _read_cuts(cuts)
        unlabelled, unlabelled_source = _read_cuts(unlabelled_cuts) if unlabelled_cuts is not None else ([], None)
        normalizer = load_cmvn(cmvn)
        for cut in labelled + unlabelled:
            if not cut.has_features:
                raise InputError(f"cut {cut.id}: has no features")
        for cut in labelled:
            if not cut.has_custom(label_field):
                raise InputError(f"cut {cut.id}: has no {label_field!r} alignment")

        def items() -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
            # Each set on its own: speaker means are over a speaker's utterances within one set.
            for part, has_labels in ((labelled, True), (unlabelled, False)):
                for cut, feats in cuts_features(part, normalizer):
                    if feats.shape[0] != cut.num_frames:
                        raise InputError(f"cut {cut.id}: features hold {feats.shape[0]} frames, the manifest says "
                                         f"{cut.num_frames}")
                    yield cut.id, feats, np.asarray(cut.load_custom(label_field)) if has_labels else None

        cuts_all = labelled + unlabelled
        total = sum(int(c.num_frames) for c in cuts_all)
        extra = {"source_cuts": source, "label_field": label_field, "cmvn": _cmvn_description(normalizer, cmvn),
                 "unlabelled_cuts": unlabelled_source}
        _write_bank(out_dir, items(), len(cuts_all), total, num_classes, extra)
        return cls.load(out_dir)

    @classmethod
    def from_arrays(cls, feats: Sequence[np.ndarray], labels: Sequence[np.ndarray], cut_ids: Sequence[str],
                    out_dir: str | os.PathLike, num_classes: int | None = None,
                    overwrite: bool = False) -> "FrameBank":
        """Bank from per-utterance arrays already normalised (features (T, D), labels (T,))."""
        out_dir = Path(out_dir)
        if (out_dir / MANIFEST).is_file() and not overwrite:
            return cls.load(out_dir)
        if not (len(feats) == len(labels) == len(cut_ids)):
            raise InputError(f"{out_dir}: {len(feats)} feature arrays, {len(labels)} label arrays, {len(cut_ids)} ids")
        if not cut_ids:
            raise InputError(f"{out_dir}: empty split, no utterances to put in a frame bank")
        total = sum(int(f.shape[0]) for f in feats)
        extra = {"source_cuts": None, "label_field": None, "cmvn": None}
        _write_bank(out_dir, zip(cut_ids, feats, labels), len(cut_ids), total, num_classes, extra)
        return cls.load(out_dir)

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device = "cpu",
             max_device_fraction: float = 0.5) -> "FrameBank":
        """Open a bank; the feature store moves to `device` when it takes under that share of free memory."""
        directory = Path(directory)
        if not (directory / MANIFEST).is_file():
            raise InputError(f"{directory}: not a frame bank (no {MANIFEST}); build one with `asr-kd build-frame-bank`")
        manifest = read_json(directory / MANIFEST)
        try:
            # Copy-on-write mapping: pages come from the file on demand, and torch gets a writable array.
            feats = np.load(directory / "feats.npy", mmap_mode="c")
            labels = np.load(directory / "labels.npy")
            offsets = np.load(directory / "utt_offsets.npy")
            cut_ids = (directory / "cut_ids.txt").read_text(encoding="utf-8").split("\n")[:-1]
        except (OSError, ValueError) as err:
            raise InputError(f"{directory}: damaged frame bank ({err})") from err
        n, d = int(manifest["num_frames"]), int(manifest["feat_dim"])
        if feats.shape != (n, d) or labels.shape != (n,) or offsets.shape != (len(cut_ids) + 1,) or offsets[-1] != n:
            raise InputError(f"{directory}: frame bank arrays disagree with {MANIFEST} "
                             f"(feats {feats.shape}, labels {labels.shape}, offsets {offsets.shape}, {len(cut_ids)} ids)")
        content = manifest.get("content_sha256")
        if content is not None and not was_verified(directory, _ARRAYS, content):
            if content_sha256(cut_ids, labels, offsets, feats) != content:
                raise InputError(f"{directory}: its arrays ({', '.join(_ARRAYS)}) do not match {MANIFEST}'s "
                                 "content_sha256: a damaged frame bank; rebuild it with `asr-kd build-frame-bank`")
            record_verified(directory, _ARRAYS, content)
        device = torch.device(device)
        store = torch.from_numpy(feats)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if feats.nbytes <= max_device_fraction * free:
                store = store.to(device)
            else:
                log.warning("frame bank %s (%.1f GB) does not fit in device memory; gathering on the host",
                            directory, feats.nbytes / 1e9)
        elif device.type != "cpu":
            store = store.to(device)
        meta_device = store.device
        return cls(directory, manifest, store, torch.from_numpy(labels).to(meta_device),
                   torch.from_numpy(offsets).to(meta_device), cut_ids, device)

    # ---------------------------------------------------------------- access
    def utterance_of(self, frame_idx: Tensor) -> Tensor:
        """Utterance index (B,) of each frame index (B,)."""
        return torch.searchsorted(self.utt_offsets, frame_idx.to(self.utt_offsets.device), right=True) - 1

    def splice(self, frame_idx: Tensor, left: int, right: int) -> Tensor:
        """Context windows (B, left+1+right, D) of the frames `frame_idx`, on the bank's device, fp16."""
        idx = frame_idx.to(self.feats.device)
        utt = self.utterance_of(idx)
        windows = gather_context(self.feats, idx, self.utt_offsets[utt], self.utt_offsets[utt + 1], left, right)
        return windows.to(self.device, non_blocking=True)

    def batch_labels(self, frame_idx: Tensor) -> Tensor:
        """int64 labels (B,) of `frame_idx` on the bank's device."""
        return self.labels[frame_idx.to(self.labels.device)].long().to(self.device, non_blocking=True)

    def utterance_frames(self, utterances: Sequence[int] | np.ndarray) -> np.ndarray:
        """Frame indices (int64) of the given utterances, in order."""
        offsets = self.utt_offsets.cpu().numpy()
        parts = [np.arange(offsets[u], offsets[u + 1], dtype=np.int64) for u in utterances]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def subset_utterances(self, fraction: float, seed: int) -> np.ndarray:
        """Sorted indices of a seeded random subset of the utterances (all of them when fraction is 1)."""
        if not 0.0 < fraction <= 1.0:
            raise InputError(f"subset fraction must be in (0, 1], got {fraction}")
        if fraction == 1.0:
            return np.arange(self.num_utterances, dtype=np.int64)
        count = max(1, round(fraction * self.num_utterances))
        return np.sort(np.random.default_rng(seed).choice(self.num_utterances, size=count, replace=False))

    def subset_frames(self, fraction: float, seed: int) -> np.ndarray:
        """Frame indices of the utterances of `subset_utterances` (all frames when fraction is 1)."""
        if fraction == 1.0:
            return np.arange(self.num_frames, dtype=np.int64)
        return self.utterance_frames(self.subset_utterances(fraction, seed))

    def utterance(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """Features (T, D) float32 and labels (T,) of utterance `u`."""
        start, end = int(self.utt_offsets[u]), int(self.utt_offsets[u + 1])
        return self.feats[start:end].float().cpu().numpy(), self.labels[start:end].cpu().numpy()

    def class_counts(self, frame_idx: np.ndarray | None = None) -> np.ndarray:
        """Labelled frames per class over the whole bank or over `frame_idx`."""
        labels = self.labels.cpu().numpy()
        if frame_idx is not None:
            labels = labels[frame_idx]
        return np.bincount(labels[labels != UNLABELLED], minlength=self.num_classes)


def _read_cuts(cuts: Any) -> tuple[list, str | None]:
    """Cuts as a list, read from a manifest path when given one; and that path (None for cuts in memory)."""
    source = str(cuts) if isinstance(cuts, (str, os.PathLike)) else None
    if source is not None:
        from lhotse import CutSet

        if not Path(source).is_file():
            raise InputError(f"{source}: no such cuts manifest")
        cuts = CutSet.from_file(source)
    cuts = list(cuts)
    if not cuts:
        raise InputError(f"{source or 'cuts'}: empty split, no cuts to put in a frame bank")
    return cuts, source


def _utterance_hash_update(h: Any, cut_id: str, labels: np.ndarray, feats: np.ndarray) -> None:
    h.update(cut_id.encode() + b"\n")
    h.update(np.asarray(labels).astype("<i4").tobytes())
    h.update(np.ascontiguousarray(feats, dtype="<f2").tobytes())


def content_sha256(cut_ids: Sequence[str], labels: np.ndarray, offsets: np.ndarray, feats: np.ndarray) -> str:
    """sha256 of a bank's cut ids, labels and fp16 features, utterance by utterance, as `build` computes it."""
    h = hashlib.sha256()
    for u, cut_id in enumerate(cut_ids):
        start, end = int(offsets[u]), int(offsets[u + 1])
        _utterance_hash_update(h, cut_id, labels[start:end], feats[start:end])
    return "sha256:" + h.hexdigest()


def _write_bank(out_dir: Path, items: Iterable[tuple[str, np.ndarray, np.ndarray]], num_utts: int,
                total_frames: int, num_classes: int | None, extra: dict[str, Any]) -> None:
    """Write a bank into a temporary directory beside `out_dir`, then rename it into place."""
    tmp_dir = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    try:
        manifest = _fill_arrays(tmp_dir, items, num_utts, total_frames, num_classes)
        manifest.update(extra)
        atomic_write_json(tmp_dir / MANIFEST, manifest)
        record_verified(tmp_dir, _ARRAYS, manifest["content_sha256"])  # the files it was just computed over
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    log.info("wrote frame bank %s: %d frames, %d utterances, %d classes", out_dir,
             manifest["num_frames"], manifest["num_utterances"], manifest["num_classes"])


def _fill_arrays(tmp_dir: Path, items: Iterable[tuple[str, np.ndarray, np.ndarray | None]], num_utts: int,
                 total_frames: int, num_classes: int | None) -> dict[str, Any]:
    feats_mm: np.memmap | None = None
    labels = np.empty(total_frames, dtype=np.int32)
    offsets = np.zeros(num_utts + 1, dtype=np.int64)
    cut_ids: list[str] = []
    checksum = hashlib.sha256()
    pos = 0
    feat_dim = None
    labelled_frames = 0
    for u, (cut_id, feats, lab) in enumerate(tqdm(items, total=num_utts, desc="frame bank", unit="utt")):
        feats = np.asarray(feats)
        unlabelled = lab is None
        lab = np.full(feats.shape[0], UNLABELLED, dtype=np.int32) if unlabelled else np.asarray(lab)
        if feats.ndim != 2:
            raise InputError(f"cut {cut_id}: features must be (frames, dim), got shape {feats.shape}")
        if feat_dim is None:
            feat_dim = feats.shape[1]
            feats_mm = np.lib.format.open_memmap(tmp_dir / "feats.npy", mode="w+", dtype=np.float16,
                                                 shape=(total_frames, feat_dim))
        if feats.shape[1] != feat_dim:
            raise InputError(f"cut {cut_id}: feature dim {feats.shape[1]} differs from the first cut's {feat_dim}")
        if lab.shape != (feats.shape[0],):
            raise InputError(f"cut {cut_id}: alignment has {lab.shape[0] if lab.ndim else 0} frames "
                             f"but the features have {feats.shape[0]}")
        if pos + feats.shape[0] > total_frames:
            raise InputError(f"cut {cut_id}: more feature frames than the manifests' num_frames announced")
        if not np.issubdtype(lab.dtype, np.integer):
            raise InputError(f"cut {cut_id}: labels must be integers, got {lab.dtype}")
        if not unlabelled and lab.size and (lab.min() < 0 or (num_classes is not None and lab.max() >= num_classes)):
            bad = int(lab.min()) if lab.min() < 0 else int(lab.max())
            raise InputError(f"cut {cut_id}: label {bad} outside [0, {num_classes if num_classes is not None else 'inf'})")
        half = feats.astype(np.float16)
        # Checked after the fp16 cast so that values too big for fp16 are caught too.
        if not np.isfinite(half).all():
            raise InputError(f"cut {cut_id}: features contain NaN or inf (or values beyond fp16 range)")
        end = pos + feats.shape[0]
        assert feats_mm is not None
        feats_mm[pos:end] = half
        labels[pos:end] = lab
        labelled_frames += 0 if unlabelled else lab.size
        offsets[u + 1] = end
        cut_ids.append(cut_id)
        _utterance_hash_update(checksum, cut_id, lab, half)
        pos = end
    if pos != total_frames:
        raise InputError(f"{tmp_dir.name}: the cuts announced {total_frames} frames but their features hold {pos}")
    if feats_mm is None or pos == 0:
        raise InputError("empty split: no frames to put in a frame bank")
    feats_mm.flush()
    del feats_mm
    if num_classes is None:
        if labelled_frames == 0:
            raise InputError("a bank without labelled frames needs num_classes (the teacher's pdf count)")
        num_classes = int(labels.max()) + 1
    np.save(tmp_dir / "labels.npy", labels)
    np.save(tmp_dir / "utt_offsets.npy", offsets)
    (tmp_dir / "cut_ids.txt").write_text("".join(f"{c}\n" for c in cut_ids), encoding="utf-8")
    return {
        "version": BANK_VERSION,
        "num_frames": int(pos),
        "num_utterances": len(cut_ids),
        "num_labelled_frames": int(labelled_frames),
        "feat_dim": int(feat_dim),
        "num_classes": int(num_classes),
        "feats_dtype": "float16",
        "checksum": "sha256:" + checksum.hexdigest(),
        "content_sha256": "sha256:" + checksum.hexdigest(),
    }
