"""lhotse manifests for a LibriSpeech-layout corpus (real or synthesized), checked line by line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from lhotse import RecordingSet, SupervisionSet, fix_manifests, validate_recordings_and_supervisions
from lhotse.recipes import prepare_librispeech
from lhotse.recipes.librispeech import parse_utterance

from asr_kd.data.corpus import SAMPLE_RATE, PartReport, check_part, find_librispeech_root
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path

log = logging.getLogger(__name__)

DEFAULT_PARTS = ("train-clean-100", "dev-clean", "test-clean")


def manifest_paths(manifest_dir: Path, part: str) -> tuple[Path, Path]:
    """lhotse's file names for one part: (recordings, supervisions)."""
    return (
        manifest_dir / f"librispeech_recordings_{part}.jsonl.gz",
        manifest_dir / f"librispeech_supervisions_{part}.jsonl.gz",
    )


def _prepare_skipping(root: Path, part: str, report: PartReport) -> tuple[RecordingSet, SupervisionSet]:
    """lhotse's own per-line parser over the lines whose audio passed the check."""
    recordings, supervisions = [], []
    for trans in sorted((root / part).rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.split(maxsplit=1)[0] in report.skipped:
                continue
            recording, segment = parse_utterance(root / part, line, {})
            recordings.append(recording)
            supervisions.append(segment)
    recording_set, supervision_set = fix_manifests(
        RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)
    )
    validate_recordings_and_supervisions(recording_set, supervision_set)
    return recording_set, supervision_set


def prepare_manifests(
    corpus_dir: str | Path,
    manifest_dir: str | Path,
    parts: Sequence[str] = DEFAULT_PARTS,
    skip_bad_audio: bool = False,
    num_workers: int = 2,
    resample_parts: Sequence[str] = (),
) -> dict[str, PartReport]:
    """Check each part, then write lhotse recording and supervision manifests for it.

    Parts whose manifests exist are skipped (resumable). Without `skip_bad_audio` any missing,
    empty or corrupt audio file is an error naming the file; with it, such utterances are left
    out with a counted warning. Audio not at 16 kHz is an error too, except in `resample_parts`
    (parts that are only decoded): `compute_fbank` resamples those.
    """
    # Absolute audio paths (as Kaldi's wav.scp has), so the manifests work from any directory.
    root = find_librispeech_root(corpus_dir).resolve()
    manifest_dir = Path(manifest_dir)
    manifest_dir.mkdir(parents=True, exist_ok=True)
    reports = {}
    for part in parts:
        rec_path, sup_path = manifest_paths(manifest_dir, part)
        if rec_path.is_file() and sup_path.is_file():
            log.info("%s: manifests exist, skipping", part)
            continue
        report = check_part(root, part, skip_bad=skip_bad_audio, resample=part in resample_parts)
        reports[part] = report
        if report.skipped:
            recordings, supervisions = _prepare_skipping(root, part, report)
        else:
            manifests = prepare_librispeech(root, dataset_parts=[part], num_jobs=num_workers)
            recordings, supervisions = manifests[part]["recordings"], manifests[part]["supervisions"]
        if len(recordings) != report.num_utterances:
            raise InputError(
                f"{root / part}: lhotse read {len(recordings)} recordings but the transcripts "
                f"name {report.num_utterances} usable utterances"
            )
        # Supervisions are written last: their presence marks the part as done.
        with atomic_path(rec_path) as tmp:
            recordings.to_file(tmp)
        with atomic_path(sup_path) as tmp:
            supervisions.to_file(tmp)
        log.info("%s: %d utterances, %.2f h", part, len(recordings), sum(r.duration for r in recordings) / 3600)
        if report.other_rates:
            log.info("%s: %d of %d recordings are not at %d Hz (%s): they are resampled at feature extraction", part,
                     sum(report.other_rates.values()), len(recordings), SAMPLE_RATE,
                     ", ".join(f"{n} at {rate} Hz" for rate, n in sorted(report.other_rates.items())))
    return reports
