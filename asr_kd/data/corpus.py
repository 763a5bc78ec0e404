"""Checks a LibriSpeech-layout corpus before lhotse reads it, so nothing is dropped silently."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import soundfile as sf

from asr_kd.utils.errors import InputError

log = logging.getLogger(__name__)

LIBRISPEECH_PARTS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)
_UTT_ID = re.compile(r"^\d+-\d+-\d+$")
SAMPLE_RATE = 16000  # LibriSpeech's, and the rate the fbank settings and every model assume


@dataclass
class PartReport:
    """What the check found in one part: utterances usable, the ones skipped (with reasons), and the
    usable audio's sample rates other than SAMPLE_RATE (rate -> files) in a part that may be resampled."""

    part: str
    num_utterances: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    other_rates: Counter = field(default_factory=Counter)


def find_librispeech_root(corpus_dir: str | Path) -> Path:
    """Accept either the `LibriSpeech/` directory itself or a directory that contains it."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise InputError(f"corpus directory {corpus_dir} does not exist")
    for candidate in (corpus_dir, corpus_dir / "LibriSpeech"):
        if any((candidate / part).is_dir() for part in LIBRISPEECH_PARTS):
            return candidate
    raise InputError(
        f"{corpus_dir} is not a LibriSpeech-layout corpus: expected one of "
        f"{', '.join(LIBRISPEECH_PARTS)} in it or in {corpus_dir / 'LibriSpeech'}"
    )


def _check_audio(path: Path, other_rates: Counter | None = None) -> str | None:
    """Return why `path` is unusable audio, or None when its header is sound.

    With `other_rates` (a part that is only decoded) a rate other than SAMPLE_RATE is counted there,
    to be resampled at feature extraction, instead of refused.
    """
    if not path.is_file():
        return "audio file is missing"
    if path.stat().st_size == 0:
        return "audio file is empty (0 bytes)"
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises several types for corrupt headers
        return f"audio file is corrupt or not FLAC ({err})"
    if info.frames == 0:
        return "audio file holds no samples"
    if info.channels != 1:
        return f"audio has {info.channels} channels, expected mono"
    if info.samplerate != SAMPLE_RATE and other_rates is not None:
        other_rates[info.samplerate] += 1
    elif info.samplerate != SAMPLE_RATE:
        # Training audio at another rate is refused rather than resampled: every training frame would
        # carry the resampler's band edge, and a corpus of mixed rates is more likely a mistake.
        return (f"audio is sampled at {info.samplerate} Hz, expected {SAMPLE_RATE} (resample it first, "
                f"e.g. sox IN.flac -r {SAMPLE_RATE} OUT.flac)")
    return None


def check_part(root: Path, part: str, skip_bad: bool = False, resample: bool = False) -> PartReport:
    """Check every transcript line of `part` against its audio.

    Raises InputError on the first problem unless `skip_bad`, in which case the bad utterances
    are listed in the report (the caller warns with the count). With `resample` (a part that is
    only decoded) audio at any sample rate is accepted and counted in `report.other_rates`.
    """
    part_dir = root / part
    if not part_dir.is_dir():
        raise InputError(f"corpus part {part_dir} does not exist")
    trans_files = sorted(part_dir.rglob("*.trans.txt"))
    if not trans_files:
        raise InputError(f"corpus part {part_dir} has no *.trans.txt transcript files")
    report = PartReport(part)
    for trans in trans_files:
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split(maxsplit=1)
            utt_id = fields[0]
            if not _UTT_ID.match(utt_id) or len(fields) < 2:
                raise InputError(f"{trans}:{lineno}: expected 'SPK-CHAP-NNNN WORDS ...', got {line!r}")
            problem = _check_audio(trans.parent / f"{utt_id}.flac", report.other_rates if resample else None)
            if problem is None:
                report.num_utterances += 1
                continue
            where = f"{trans.parent / (utt_id + '.flac')} (from {trans}:{lineno})"
            if not skip_bad:
                raise InputError(f"{where}: {problem}")
            report.skipped[utt_id] = f"{where}: {problem}"
    if report.num_utterances == 0:
        raise InputError(f"corpus part {part_dir} has no usable utterances")
    if report.skipped:
        log.warning(
            "%s: skipping %d of %d utterances with bad audio (first: %s)",
            part,
            len(report.skipped),
            report.num_utterances + len(report.skipped),
            next(iter(report.skipped.values())),
        )
    return report


def check_corpus(corpus_dir: str | Path, parts: Sequence[str], skip_bad: bool = False) -> dict[str, PartReport]:
    """Check the named parts of a LibriSpeech-layout corpus; see `check_part`."""
    root = find_librispeech_root(corpus_dir)
    return {part: check_part(root, part, skip_bad=skip_bad) for part in parts}
