"""Stage 1's fbank extraction: CPU seconds per audio second, before and after the worker fix.

Both paths compute the same features of one corpus part into lilcom storage with --num-workers
spawned worker processes, in the same run:
  old  lhotse's default pool, as compute_fbank used before: the workers keep torch's default
       thread count (one per core), since a spawned process does not inherit the parent's
       torch.set_num_threads(1);
  new  asr_kd.data.features.compute_fbank: one pool per call whose workers run one torch thread
       (and once more with --num-workers 1, in this process, to show the workers' start-up cost).
CPU time is the process's own plus its reaped children's (getrusage), so load from other
processes on the machine does not count, though it does stretch the wall time and makes busy-waiting
threads spin longer. Then, in this process with one thread, the CPU cost of each piece of the
per-cut work: FLAC decoding, the fbank itself (also at the default thread count, and with
kaldi-native-fbank when that package is installed, with its max abs difference to lhotse's Fbank),
and lilcom compression + writing.

    python bench/bench_features.py [--corpus-dir exp/synth-mini/corpus --part dev-clean --num-workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from lhotse import CutSet, LilcomChunkyWriter, load_manifest

from asr_kd.data.features import compute_fbank, fbank_extractor
from asr_kd.data.prepare import manifest_paths, prepare_manifests


def cpu_now() -> float:
    """CPU seconds of this process and its reaped children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def old_path(cuts: CutSet, out: Path, num_workers: int) -> None:
    """compute_fbank before the fix: lhotse's own spawn pool, the parent at one thread."""
    torch.set_num_threads(1)
    # The pool lhotse builds when no executor is given, made here so that it is joined before reading CPU.
    with ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        cuts.compute_and_store_features(
            extractor=fbank_extractor(), storage_path=out, num_jobs=num_workers, executor=pool,
            storage_type=LilcomChunkyWriter,
        ).to_eager()


def timed(fn) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of fn()."""
    cpu, wall = cpu_now(), time.perf_counter()
    fn()
    return cpu_now() - cpu, time.perf_counter() - wall


def knf_fbank(samples: np.ndarray):
    """kaldi-native-fbank with lhotse Fbank's settings (40 bins, 20..7600 Hz, no dither, no snip edges)."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = False
    opts.frame_opts.window_type = "povey"
    opts.mel_opts.num_bins = 40
    opts.mel_opts.low_freq = 20.0
    opts.mel_opts.high_freq = -400.0
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(16000, samples)
    fbank.input_finished()
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])


def pieces(cuts: CutSet, work: Path, seconds: float) -> None:
    """CPU seconds per audio second of each piece of the per-cut work, one thread, this process."""
    audio = []
    cpu = time.process_time()
    for cut in cuts:
        audio.append(sf.read(cut.recording.sources[0].source, dtype="float32")[0])
    rows = [("FLAC decoding (soundfile)", time.process_time() - cpu)]
    extractor = fbank_extractor()
    default_threads = os.cpu_count() or 1
    feats = []
    for threads in (1, default_threads):
        torch.set_num_threads(threads)
        cpu = time.process_time()
        feats = [extractor.extract(x, 16000) for x in audio]
        rows.append((f"lhotse Fbank (torch), {threads} thread(s)", time.process_time() - cpu))
    torch.set_num_threads(1)
    try:
        cpu = time.process_time()
        knf = [knf_fbank(x) for x in audio]
        rows.append(("kaldi-native-fbank", time.process_time() - cpu))
        assert all(a.shape == b.shape for a, b in zip(feats, knf)), "frame counts differ"
        diff = max(float(np.abs(a - b).max()) for a, b in zip(feats, knf))
    except ImportError:
        diff = None
    cpu = time.process_time()
    with LilcomChunkyWriter(work / "pieces") as writer:
        for cut, f in zip(cuts, feats):
            writer.write(cut.id, f)
    rows.append(("lilcom compression + write", time.process_time() - cpu))
    print(f"\nper-cut work in one process ({seconds / 3600:.3f} h of audio):")
    for name, cpu in rows:
        print(f"  {name:38s} {cpu / seconds:.5f} CPU s per audio s  ({cpu / seconds * 3600:6.2f} per audio h)")
    if diff is None:
        print("  kaldi-native-fbank: not installed (`pip install kaldi-native-fbank` to compare it)")
    else:
        print(f"  kaldi-native-fbank vs lhotse Fbank: max abs difference {diff:.2e} (log mel), equal frame counts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", type=Path, default=Path("exp/synth-mini/corpus"))
    parser.add_argument("--part", default="dev-clean")
    parser.add_argument("--num-workers", type=int, default=2)
    args = parser.parse_args()

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cpu, wall = timed(lambda: prepare_manifests(args.corpus_dir, work / "manifests", [args.part]))
        rec_path, sup_path = manifest_paths(work / "manifests", args.part)
        cuts = CutSet.from_manifests(recordings=load_manifest(rec_path), supervisions=load_manifest(sup_path))
        seconds = sum(cut.duration for cut in cuts)
        print(f"{args.part}: {len(cuts)} cuts, {seconds / 3600:.3f} h of audio; --num-workers {args.num_workers}")
        print(f"  manifests (corpus check + prepare_librispeech): {cpu / seconds:.5f} CPU s per audio s, {wall:.1f} s wall")
        new_cpu, new_wall = timed(lambda: compute_fbank(work / "manifests", work / "new", [args.part], args.num_workers))
        old_cpu, old_wall = timed(lambda: old_path(cuts, work / "old", args.num_workers))
        print(f"  old path: {old_cpu / seconds:.5f} CPU s per audio s, {old_wall:.1f} s wall")
        print(f"  new path: {new_cpu / seconds:.5f} CPU s per audio s, {new_wall:.1f} s wall")
        print(f"  old / new: {old_cpu / new_cpu:.1f}x CPU, {old_wall / new_wall:.1f}x wall")
        one_cpu, one_wall = timed(lambda: compute_fbank(work / "manifests", work / "serial", [args.part], 1))
        print(f"  new path, --num-workers 1 (no worker start-up): {one_cpu / seconds:.5f} CPU s per audio s, "
              f"{one_wall:.1f} s wall; so the {args.num_workers} workers' start-up costs ~{new_cpu - one_cpu:.1f} CPU s")
        pieces(cuts, work, seconds)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
