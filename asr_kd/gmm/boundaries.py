"""Alignment accuracy against the synthesizer's true phone times (`*.phones.ctm`), per TTS engine."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import kaldialign
import numpy as np

from asr_kd.gmm.system import TransitionArrays
from asr_kd.gmm.tree import phone_instances
from asr_kd.utils.errors import InputError

FRAME_SHIFT = 0.01
NON_SPEECH = frozenset({"SIL", "SPN", "<eps>"})


@dataclass(frozen=True)
class TimedPhone:
    phone: str
    start: float


def read_phone_ctms(corpus_dir: str | Path) -> dict[str, list[TimedPhone]]:
    """All `*.phones.ctm` under a corpus: utterance id -> phones with start times (in file order)."""
    out: dict[str, list[TimedPhone]] = defaultdict(list)
    for path in sorted(Path(corpus_dir).rglob("*.phones.ctm")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5:
                raise InputError(f"{path}:{n}: expected 'UTT 1 START DUR PHONE', got {line!r}")
            out[parts[0]].append(TimedPhone(parts[4], float(parts[2])))
    return dict(out)


def read_speaker_engines(speakers_txt: str | Path) -> dict[str, str]:
    """Speaker id -> TTS engine (first word of SPEAKERS.TXT's NAME field)."""
    path = Path(speakers_txt)
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    engines = {}
    for line in path.read_text().splitlines():
        if line.startswith(";") or not line.strip():
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 5 or not fields[4]:
            raise InputError(f"{path}: malformed line {line!r}")
        engines[fields[0]] = fields[4].split()[0]
    return engines


def aligned_phones(tids: np.ndarray, arrays: TransitionArrays, id_to_phone: Mapping[int, str]) -> list[TimedPhone]:
    """Phone instances of an alignment with their start times (frame index x 10 ms)."""
    inst = phone_instances(tids, arrays)
    starts = np.flatnonzero(np.diff(inst, prepend=-1))
    return [TimedPhone(id_to_phone[int(arrays.phone[tids[s]])], s * FRAME_SHIFT) for s in starts]


def boundary_errors(reference: list[TimedPhone], hypothesis: list[TimedPhone]) -> list[float]:
    """|start time difference| of every speech phone the two sequences share after edit-distance alignment."""
    ref = [p for p in reference if p.phone not in NON_SPEECH]
    hyp = [p for p in hypothesis if p.phone not in NON_SPEECH]
    eps = "*"
    pairs = kaldialign.align([p.phone for p in ref], [p.phone for p in hyp], eps)
    errors = []
    i = j = 0
    for r, h in pairs:
        if r != eps and h != eps:
            if r == h:
                errors.append(abs(ref[i].start - hyp[j].start))
            i += 1
            j += 1
        elif r != eps:
            i += 1
        else:
            j += 1
    return errors


def boundary_accuracy(alignments: Mapping[str, np.ndarray], arrays: TransitionArrays, id_to_phone: Mapping[int, str],
                      references: Mapping[str, list[TimedPhone]], utt_engine: Mapping[str, str],
                      tolerance: float = 0.02) -> dict[str, dict[str, float]]:
    """Share of phone start times within `tolerance` of the truth, per engine and "all".

    Only utterances with reference times count; each result has `within`, `boundaries`, `utterances`.
    """
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for utt, tids in alignments.items():
        if utt not in references:
            continue
        errors = boundary_errors(references[utt], aligned_phones(tids, arrays, id_to_phone))
        ok = sum(e <= tolerance + 1e-9 for e in errors)
        for key in (utt_engine.get(utt, "unknown"), "all"):
            hits[key][0] += ok
            hits[key][1] += len(errors)
            hits[key][2] += 1
    return {k: {"within": v[0] / max(v[1], 1), "boundaries": v[1], "utterances": v[2]} for k, v in hits.items()}


def engines_of_utterances(utt_ids: Iterable[str], speaker_engines: Mapping[str, str]) -> dict[str, str]:
    """Utterance id (SPK-CHAP-NNNN) -> engine of its speaker."""
    return {u: speaker_engines.get(u.split("-")[0], "unknown") for u in utt_ids}
