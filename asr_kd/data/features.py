"""40-dim log-mel filterbank features (the paper's input) through lhotse, with CMVN stats."""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import torch
from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, load_manifest
from lhotse.utils import compute_num_frames

from asr_kd.data.cmvn import NORM_MODES, compute_cmvn, compute_input_norm, save_speaker_cmvn
from asr_kd.data.corpus import SAMPLE_RATE
from asr_kd.data.prepare import manifest_paths
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path

log = logging.getLogger(__name__)

FRAME_SHIFT = 0.01
NUM_MEL_BINS = 40


def fbank_extractor() -> Fbank:
    """Kaldi-compatible fbank: 25 ms window, 10 ms shift, 40 mel bins, no dither (reproducible)."""
    return Fbank(FbankConfig(num_filters=NUM_MEL_BINS, frame_shift=FRAME_SHIFT, dither=0.0))


def cuts_path(fbank_dir: str | Path, part: str) -> Path:
    """Where the feature cuts of `part` live."""
    return Path(fbank_dir) / f"cuts_{part}.jsonl.gz"


def join_parts(fbank_dir: str | Path, parts: Sequence[str], name: str) -> Path:
    """`cuts_<name>.jsonl.gz`: the feature cuts of several parts as one set (Kaldi's combine_data.sh), once."""
    target = cuts_path(fbank_dir, name)
    if target.is_file():
        return target
    cuts = CutSet.from_cuts(c for part in parts for c in load_manifest(cuts_path(fbank_dir, part)))
    with atomic_path(target) as tmp:
        cuts.to_file(tmp)
    log.info("%s: the %d cuts of %s", target, len(cuts), " + ".join(parts))
    return target


def _check_no_cut_dropped(before: CutSet, after: CutSet) -> None:
    """lhotse drops cuts whose audio fails to decode with only a log line; make that an error."""
    kept = set(after.ids)
    dropped = [cut for cut in before if cut.id not in kept]
    if not dropped:
        return
    cut = dropped[0]
    try:
        cut.load_audio()
        reason = "lhotse produced no features for it"
    except Exception as err:
        reason = f"audio cannot be decoded ({str(err).splitlines()[0]})"
    raise InputError(
        f"{cut.recording.sources[0].source}: {reason}; {len(dropped)} of {len(before)} cuts "
        f"lost in feature extraction"
    )


def resampled_rates(cuts: CutSet) -> dict[int, int]:
    """Source sample rate -> number of cuts whose audio lhotse resampled to SAMPLE_RATE (from the manifest)."""
    rates: dict[int, int] = {}
    for cut in cuts:
        for transform in cut.recording.transforms or ():
            record = transform if isinstance(transform, dict) else transform.to_dict()  # as read, or as made
            if record["name"] == "Resample":
                rate = int(record["kwargs"]["source_sampling_rate"])
                rates[rate] = rates.get(rate, 0) + 1
    return rates


def check_frame_counts(cuts: CutSet) -> None:
    """Each cut's feature matrix has the frame count its duration implies."""
    for cut in cuts:
        expected = compute_num_frames(cut.duration, FRAME_SHIFT, cut.sampling_rate)
        if cut.num_frames != expected:
            raise InputError(
                f"cut {cut.id}: {cut.num_frames} feature frames but its duration {cut.duration:.3f} s "
                f"implies {expected}"
            )


def _one_torch_thread() -> None:
    """Worker initializer: one intra-op thread per feature process."""
    torch.set_num_threads(1)


def feature_workers(num_workers: int) -> ProcessPoolExecutor:
    """Spawned worker processes for `compute_and_store_features`, each computing with one torch thread.

    The thread count is set inside each worker because spawned processes start with torch's
    default of one thread per core whatever the parent set; on the shared 2-core machine two such
    workers spent over 10x the CPU and wall time of one-thread workers, busy-waiting
    (bench/bench_features.py).
    """
    return ProcessPoolExecutor(
        num_workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_torch_thread
    )


def compute_fbank(
    manifest_dir: str | Path,
    fbank_dir: str | Path,
    parts: Sequence[str],
    num_workers: int = 2,
    resample_parts: Sequence[str] = (),
) -> dict[str, Path]:
    """Compute fbank for each part's recordings into lilcom storage; write `cuts_<part>.jsonl.gz`.

    A part whose cut manifest exists is skipped (resumable). With `num_workers` > 1 one pool of
    worker processes serves all parts (each worker start imports torch and lhotse anew). Audio of
    `resample_parts` not at 16 kHz is resampled by lhotse first; the cuts' recordings record it.
    """
    fbank_dir = Path(fbank_dir)
    fbank_dir.mkdir(parents=True, exist_ok=True)
    extractor = fbank_extractor()
    outputs = {}
    executor: Executor | None = None
    threads = torch.get_num_threads()
    with ExitStack() as stack:
        # One thread here too (num_workers=1 computes in this process); restored on the way out.
        torch.set_num_threads(1)
        stack.callback(torch.set_num_threads, threads)
        for part in parts:
            target = cuts_path(fbank_dir, part)
            outputs[part] = target
            if target.is_file():
                log.info("%s: features exist, skipping", part)
                continue
            rec_path, sup_path = manifest_paths(Path(manifest_dir), part)
            if not sup_path.is_file():
                raise InputError(f"{sup_path} does not exist: prepare the manifests of {part} first")
            cuts = CutSet.from_manifests(recordings=load_manifest(rec_path), supervisions=load_manifest(sup_path))
            if part in resample_parts:
                cuts = cuts.resample(SAMPLE_RATE).to_eager()  # a no-op for cuts already at SAMPLE_RATE
                rates = resampled_rates(cuts)
                if rates:
                    log.info("%s: resampling %s to %d Hz through lhotse before fbank", part,
                             ", ".join(f"{n} recordings at {rate} Hz" for rate, n in sorted(rates.items())),
                             SAMPLE_RATE)
            log.info("%s: computing fbank for %d cuts with %d workers", part, len(cuts), num_workers)
            if num_workers > 1 and executor is None:
                executor = stack.enter_context(feature_workers(num_workers))
            with_feats = cuts.compute_and_store_features(
                extractor=extractor,
                # Absolute (as Kaldi's make_fbank.sh writes feats.scp): the cuts work from any directory.
                storage_path=(fbank_dir / f"feats_{part}").resolve(),
                num_jobs=num_workers,
                executor=executor,
                storage_type=LilcomChunkyWriter,
            ).to_eager()
            _check_no_cut_dropped(cuts, with_feats)
            cuts = with_feats
            check_frame_counts(cuts)
            with atomic_path(target) as tmp:
                cuts.to_file(tmp)
    return outputs


def input_norm_path(fbank_dir: str | Path, mode: str) -> Path:
    """Where stage 1 keeps the network-input CMVN of `mode`: cmvn.json (global), cmvn_<mode>.json otherwise."""
    return Path(fbank_dir) / ("cmvn.json" if mode == "global" else f"cmvn_{mode}.json")


def compute_cmvn_stats(fbank_dir: str | Path, train_part: str, parts: Sequence[str]) -> Path:
    """Network-input CMVN of `train_part` in every mode (`input_norm_path`), and the GMM's per-speaker
    stats of each part into `cmvn_speakers_<part>.json`; returns the global file's path."""
    fbank_dir = Path(fbank_dir)
    train_cuts = None
    for mode in NORM_MODES:
        path = input_norm_path(fbank_dir, mode)
        if not path.is_file():
            train_cuts = train_cuts or load_manifest(cuts_path(fbank_dir, train_part)).to_eager()
            compute_input_norm(list(train_cuts), mode).save(path)
    global_path = input_norm_path(fbank_dir, "global")
    for part in parts:
        speaker_path = fbank_dir / f"cmvn_speakers_{part}.json"
        if not speaker_path.is_file():
            save_speaker_cmvn(compute_cmvn(load_manifest(cuts_path(fbank_dir, part)), per_speaker=True), speaker_path)
    return global_path
