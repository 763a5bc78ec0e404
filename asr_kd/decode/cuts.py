"""Parts to decode from lhotse cuts: utterance ids, references, test-part names, LibriSpeech-layout directories."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
from lhotse import CutSet

from asr_kd.data.features import compute_fbank, cuts_path as fbank_cuts_path, resampled_rates
from asr_kd.data.prepare import prepare_manifests
from asr_kd.decode.hybrid import PartInputs
from asr_kd.utils.errors import InputError

Source = TypeVar("Source", str, Path)


def utterance_id(cut) -> str:
    """The utterance id a hypothesis is written under: the supervision's (LibriSpeech's) id, else the cut's."""
    return cut.supervisions[0].id if len(cut.supervisions) == 1 else cut.id


def references(cuts) -> dict[str, list[str]]:
    """Reference words per utterance from the cuts' supervisions."""
    return {utterance_id(c): " ".join(s.text or "" for s in c.supervisions).split() for c in cuts}


def part_name(source: str | Path) -> str:
    """A test part's name from its source: `test-other` from LibriSpeech/test-other or cuts_test-other.jsonl.gz."""
    name = Path(source).name
    for suffix in (".gz", ".jsonl"):
        name = name.removesuffix(suffix)
    return name.removeprefix("cuts_")


def name_test_parts(sources: Sequence[Source]) -> dict[str, Source]:
    """name -> source of the test parts: the first is `test` (outputs under <out-dir>/test), the others by
    `part_name`."""
    named: dict[str, Source] = {}
    for i, source in enumerate(sources):
        name = "test" if i == 0 else part_name(source)
        if name in named or name in ("dev", "scoring", "data", "log"):
            raise InputError(f"{source}: a test part named {name!r} clashes with another output of the decode")
        named[name] = source
    return named


def load_part(cuts_path: str | Path | None, part_dir: str | Path | None, work_dir: Path, what: str) -> CutSet:
    """A CutSet with features: from a manifest, or made from a LibriSpeech-layout part directory (resampled
    to 16 kHz where its audio has another rate)."""
    cuts_path, part_dir = (None if p is None else Path(p) for p in (cuts_path, part_dir))
    if (cuts_path is None) == (part_dir is None):
        raise InputError(f"give exactly one of --{what}-cuts and --{what}-dir")
    if cuts_path is not None:
        if not cuts_path.is_file():
            raise InputError(f"{cuts_path}: no such cuts manifest")
        cuts = CutSet.from_file(cuts_path)
    else:
        if not part_dir.is_dir():
            raise InputError(f"{part_dir}: no such LibriSpeech part directory")
        part = part_dir.name
        prepare_manifests(part_dir.parent, work_dir / "manifests", [part], resample_parts=[part])
        compute_fbank(work_dir / "manifests", work_dir / "fbank", [part], resample_parts=[part])
        cuts = CutSet.from_file(fbank_cuts_path(work_dir / "fbank", part))
    for cut in cuts:
        if not cut.has_features:
            raise InputError(f"cut {cut.id} ({cuts_path or part_dir}): has no features")
    return cuts


def cuts_part(name: str, cuts: Sequence, chunks: Callable[[], Iterable[Mapping[str, np.ndarray]]]) -> PartInputs:
    """The part of `cuts` whose inputs `chunks()` yields keyed by cut id; hypotheses go under utterance ids, and
    the data record states the sample rates lhotse resampled from."""
    ids = {c.id: utterance_id(c) for c in cuts}
    if len(set(ids.values())) != len(ids):
        raise InputError(f"{name}: two cuts share an utterance id")

    def by_utterance() -> Iterator[dict[str, np.ndarray]]:
        for chunk in chunks():
            yield {ids[cut_id]: matrix for cut_id, matrix in chunk.items()}

    rates = resampled_rates(cuts)  # source rate -> utterances lhotse resampled to 16 kHz before fbank
    data = {"resampled_from_hz": {str(rate): n for rate, n in sorted(rates.items())}} if rates else {}
    return PartInputs(name, references(cuts), by_utterance, data)
