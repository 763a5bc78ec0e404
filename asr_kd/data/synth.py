"""The embedded corpus: synthesized speech laid out exactly like LibriSpeech.

`synthesize_corpus` plans speakers, chapters and sentences from a seed, then speaks every chapter
in parallel worker processes. A chapter is finished when its `SPK-CHAP.trans.txt` exists (written
last, atomically), so an interrupted run resumes where it stopped. Dev and test speakers never
speak in train, and dev/test sentences appear neither in train nor in `lm-text.txt`.

The never-heard test set (NEVER_HEARD_SPLIT, LibriSpeech's name for its harder test set) reads
test-clean's sentences with a voice family that no other split can draw
(`asr_kd.data.voices.never_heard_catalog`): its WER differs from test-clean's by the voices alone.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import soundfile
from tqdm import tqdm

from asr_kd.data.text import load_sentence_pool
from asr_kd.data.voices import ENGINES, Speaker, check_engine, never_heard_catalog, speaker_catalog, synthesize
from asr_kd.utils.errors import InputError
from asr_kd.utils.fingerprint import SYNTH_PACKAGES, debian_package_versions, versions_line
from asr_kd.utils.io import atomic_write_json, atomic_write_text, read_json

logger = logging.getLogger(__name__)

SPLITS = ("train-clean-100", "dev-clean", "test-clean")
# Extra training speech, as LibriSpeech's train-clean-360: other speakers, other sentences. The
# recipes use its audio only, as an unlabelled transfer set that the teacher labels for the student.
TRANSFER_SPLIT = "train-clean-360"
# test-clean's sentences spoken by voices of a family no other split uses; decoded and scored, never trained on.
NEVER_HEARD_SPLIT = "test-other"
# Part of the settings check: bump when planning changes. Adding the never-heard split did not: it is
# planned after every other split from its own random stream, so the others are as they were.
PLAN_VERSION = 1


@dataclass(frozen=True)
class CorpusSize:
    """Hours of audio to plan per split (`transfer_hours` for TRANSFER_SPLIT, 0: none); `never_heard`:
    plan NEVER_HEARD_SPLIT (test-clean's sentences, so its size is test-clean's)."""

    train_hours: float
    dev_hours: float
    test_hours: float
    transfer_hours: float = 0.0
    never_heard: bool = False

    def hours(self, split: str) -> float:
        return {"train-clean-100": self.train_hours, "dev-clean": self.dev_hours,
                "test-clean": self.test_hours, TRANSFER_SPLIT: self.transfer_hours,
                NEVER_HEARD_SPLIT: self.test_hours if self.never_heard else 0.0}[split]

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this size plans: the three labelled ones, the transfer split, the never-heard one."""
        return (SPLITS + ((TRANSFER_SPLIT,) if self.transfer_hours > 0 else ())
                + ((NEVER_HEARD_SPLIT,) if self.never_heard else ()))

    def settings(self) -> dict:
        """The size as recorded in synth-config.json (no transfer or never-heard field when there is none, as
        before they existed)."""
        record = dataclasses.asdict(self)
        if not self.transfer_hours:
            del record["transfer_hours"]
        if not self.never_heard:
            del record["never_heard"]
        return record


CORPUS_SIZES = {
    # ~10 min with transcripts, 3 min of transfer audio and 1.5 min never-heard: the test suite's corpus.
    "tiny": CorpusSize(7 / 60, 1.5 / 60, 1.5 / 60, transfer_hours=3 / 60, never_heard=True),
    # The README demo: 2.5 h with alignments. `--transfer-hours 8` adds 8.4 h of unlabelled audio that lifted
    # a same-size student from 44% to 81% of its ensemble's gain at 3 x 1024, and to 66% at 3 x 512 (one seed
    # each, egs/synth/RESULTS.md); the demo's preset does not spend the synthesis and labelling time on it yet.
    "mini": CorpusSize(2.5, 0.25, 0.25, never_heard=True),
    "small": CorpusSize(10.0, 1.0, 1.0, never_heard=True),
    "train-clean-100": CorpusSize(100.0, 5.4, 5.4, never_heard=True),  # LibriSpeech's sizes
}
# Share of each split's speakers (and so of its audio) per engine. Per second of audio festival
# costs ~2.7x espeak-ng's CPU and flite ~1.7x (bench/bench_synth.py); flite and festival give
# phone times, espeak-ng the most accents.
ENGINE_MIX = {"espeak-ng": 0.40, "flite": 0.35, "festival": 0.25}
# Seconds of audio per word at rate 1.0, and per utterance (leading/trailing silence), measured
# on these voices; they only steer the plan towards the requested hours.
_SECONDS_PER_WORD = {"espeak-ng": 0.27, "flite": 0.27, "festival": 0.31}
_SECONDS_PER_UTTERANCE = 0.35
_CHAPTER_MINUTES = 15.0


def corpus_size(name: str | None = None, hours: float | None = None,
                transfer_hours: float | None = None) -> CorpusSize:
    """Size from `hours` of train (dev and test each a tenth of it, at most 5.4 h) or by name (CORPUS_SIZES);
    `transfer_hours` of unlabelled TRANSFER_SPLIT audio (None: the named size's own, none for all but tiny)."""
    if hours is not None:
        if hours <= 0:
            raise InputError(f"--hours must be positive, got {hours}")
        held_out = min(0.1 * hours, 5.4)
        size = CorpusSize(hours, held_out, held_out, never_heard=True)
    elif name not in CORPUS_SIZES:
        raise InputError(f"unknown corpus size {name!r}; choose from {', '.join(CORPUS_SIZES)} or give hours")
    else:
        size = CORPUS_SIZES[name]
    if transfer_hours is None:
        return size
    if transfer_hours < 0:
        raise InputError(f"--transfer-hours must be 0 or more, got {transfer_hours}")
    return dataclasses.replace(size, transfer_hours=transfer_hours)


def num_speakers(split: str, hours: float) -> int:
    """Speakers per split; grows like sqrt(hours), which gives LibriSpeech's 251 / 40 / 40 at full size."""
    scale = 25.0 if split in ("train-clean-100", TRANSFER_SPLIT) else 16.0
    return max(len(ENGINES), round(scale * math.sqrt(hours)))


def _engine_counts(total: int) -> dict[str, int]:
    """Split `total` speakers over engines by ENGINE_MIX (largest remainder), at least one each."""
    counts = {e: 1 for e in ENGINES}
    rest = total - len(ENGINES)
    shares = {e: ENGINE_MIX[e] * rest for e in ENGINES}
    for e in ENGINES:
        counts[e] += int(shares[e])
    leftover = total - sum(counts.values())
    for e in sorted(ENGINES, key=lambda e: shares[e] - int(shares[e]), reverse=True)[:leftover]:
        counts[e] += 1
    return counts


def estimated_seconds(sentence: str, speaker: Speaker) -> float:
    """Planning estimate of the audio length of `sentence` spoken by `speaker`."""
    words = sentence.count(" ") + 1
    return _SECONDS_PER_UTTERANCE + words * _SECONDS_PER_WORD[speaker.engine] / speaker.rate


@dataclass(frozen=True)
class ChapterPlan:
    """One chapter: who reads it, where it goes and its (utt_id, SENTENCE) list."""

    split: str
    speaker_id: int
    chapter_id: int
    speaker: Speaker
    utterances: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        return f"{self.speaker_id}-{self.chapter_id}"

    def directory(self, librispeech_dir: Path) -> Path:
        return librispeech_dir / self.split / str(self.speaker_id) / str(self.chapter_id)


@dataclass(frozen=True)
class CorpusPlan:
    """Everything the seed decides: speakers per split, chapters, and the LM text."""

    speakers: dict[int, tuple[str, Speaker]]  # speaker id -> (split, speaker)
    chapters: tuple[ChapterPlan, ...]
    lm_sentences: tuple[str, ...]


def plan_corpus(sentences: Sequence[str], size: CorpusSize, seed: int = 0) -> CorpusPlan:
    """Assign speakers and sentences to splits and chapters, deterministically for a seed.

    Sentences are drawn without replacement, dev and test first; the LM text is every sentence
    not drawn for dev or test (train sentences included, as in LibriSpeech's LM corpus). The
    transfer split, then the never-heard split, are planned last, each from its own random stream,
    so adding either leaves train, dev and test exactly as they are without it; the never-heard
    speakers' ids are drawn from those no other split holds, so they change with the transfer split.
    """
    rng = random.Random(seed)
    order = list(range(len(sentences)))
    rng.shuffle(order)
    catalogs = {e: speaker_catalog(e) for e in ENGINES}
    for catalog in catalogs.values():
        rng.shuffle(catalog)  # each speaker is taken once, so splits never share one

    split_speakers = {}
    for split in (s for s in size.splits if s != NEVER_HEARD_SPLIT):  # its speakers come from their own catalog
        counts = _engine_counts(num_speakers(split, size.hours(split)))
        split_speakers[split] = [catalogs[e].pop() for e in ENGINES for _ in range(counts[e])]
    total_speakers = sum(len(split_speakers[split]) for split in SPLITS)
    speaker_ids = rng.sample(range(100, 10000), total_speakers)
    extra_rng = random.Random(f"{seed}:{TRANSFER_SPLIT}")
    if TRANSFER_SPLIT in split_speakers:
        free = sorted(set(range(100, 10000)) - set(speaker_ids))
        speaker_ids = extra_rng.sample(free, len(split_speakers[TRANSFER_SPLIT])) + speaker_ids

    speakers: dict[int, tuple[str, Speaker]] = {}
    chapters: list[ChapterPlan] = []
    used_chapter_ids: set[int] = set()
    cursor = 0
    held_out: set[int] = set()
    for split in ("dev-clean", "test-clean", "train-clean-100") + ((TRANSFER_SPLIT,) if TRANSFER_SPLIT in split_speakers else ()):
        split_rng = extra_rng if split == TRANSFER_SPLIT else rng
        seconds_per_speaker = size.hours(split) * 3600 / len(split_speakers[split])
        num_chapters = max(1, math.ceil(seconds_per_speaker / 60 / _CHAPTER_MINUTES))
        for speaker in split_speakers[split]:
            speaker_id = speaker_ids.pop()
            speakers[speaker_id] = (split, speaker)
            for _ in range(num_chapters):
                chapter_id = split_rng.randrange(10000, 200000)
                while chapter_id in used_chapter_ids:
                    chapter_id = split_rng.randrange(10000, 200000)
                used_chapter_ids.add(chapter_id)
                utterances = []
                seconds = 0.0
                while seconds < seconds_per_speaker / num_chapters:
                    if cursor == len(order):
                        raise InputError(f"the sentence pool ({len(sentences)} sentences) is too small "
                                         f"for {size}; ask for fewer hours")
                    sentence = sentences[order[cursor]]
                    if split in ("dev-clean", "test-clean"):
                        held_out.add(order[cursor])
                    cursor += 1
                    utterances.append((f"{speaker_id}-{chapter_id}-{len(utterances):04d}", sentence))
                    seconds += estimated_seconds(sentence, speaker)
                chapters.append(ChapterPlan(split, speaker_id, chapter_id, speaker, tuple(utterances)))
    if size.never_heard:
        chapters += _plan_never_heard(chapters, speakers, used_chapter_ids, seed)
    lm_sentences = tuple(s for i, s in enumerate(sentences) if i not in held_out)
    return CorpusPlan(speakers, tuple(chapters), lm_sentences)


def _plan_never_heard(chapters: Sequence[ChapterPlan], speakers: dict[int, tuple[str, Speaker]],
                      used_chapter_ids: set[int], seed: int) -> list[ChapterPlan]:
    """NEVER_HEARD_SPLIT: each test-clean chapter again, read by a never-heard speaker (added to `speakers`).

    From its own random stream, after every other split, so the others are the same with or without it.
    """
    rng = random.Random(f"{seed}:{NEVER_HEARD_SPLIT}")
    voices = never_heard_catalog()
    rng.shuffle(voices)
    free_ids = sorted(set(range(100, 10000)) - set(speakers))
    planned = []
    for test_chapter in (c for c in chapters if c.split == "test-clean"):
        speaker_id = rng.choice(free_ids)
        free_ids.remove(speaker_id)
        speakers[speaker_id] = (NEVER_HEARD_SPLIT, voices.pop())
        chapter_id = rng.randrange(10000, 200000)
        while chapter_id in used_chapter_ids:
            chapter_id = rng.randrange(10000, 200000)
        used_chapter_ids.add(chapter_id)
        utterances = tuple((f"{speaker_id}-{chapter_id}-{i:04d}", sentence)
                           for i, (_, sentence) in enumerate(test_chapter.utterances))
        planned.append(ChapterPlan(NEVER_HEARD_SPLIT, speaker_id, chapter_id, speakers[speaker_id][1], utterances))
    return planned


def _chapter_done(chapter: ChapterPlan, librispeech_dir: Path) -> bool:
    return (chapter.directory(librispeech_dir) / f"{chapter.name}.trans.txt").exists()


def synthesize_chapter(chapter: ChapterPlan, librispeech_dir: Path) -> None:
    """Speak one chapter: FLACs, then the phone CTM (if the engine gives times), then trans.txt last."""
    directory = chapter.directory(librispeech_dir)
    results = synthesize(chapter.speaker, chapter.utterances, directory)
    ctm = [f"{u.utt_id} 1 {start:.3f} {dur:.3f} {phone}\n"
           for u in results if u.phones for start, dur, phone in u.phones]
    if ctm:
        atomic_write_text(directory / f"{chapter.name}.phones.ctm", "".join(ctm))
    atomic_write_text(directory / f"{chapter.name}.trans.txt",
                      "".join(f"{utt_id} {sentence}\n" for utt_id, sentence in chapter.utterances))


def _synthesize_chapter_task(args: tuple[ChapterPlan, Path]) -> str:
    chapter, librispeech_dir = args
    synthesize_chapter(chapter, librispeech_dir)
    return chapter.name


def _relative_cost(chapter: ChapterPlan) -> float:
    per_second = {"espeak-ng": 1.0, "flite": 1.7, "festival": 2.7}  # CPU per audio second, see bench/
    return per_second[chapter.speaker.engine] * sum(estimated_seconds(s, chapter.speaker)
                                                     for _, s in chapter.utterances)


def _speak_all(chapters: Sequence[ChapterPlan], librispeech_dir: Path, num_workers: int) -> None:
    # Costliest chapters first, so no long festival chapter is left to run alone at the end.
    pending = sorted(chapters, key=_relative_cost, reverse=True)
    tasks = [(chapter, librispeech_dir) for chapter in pending]
    progress = tqdm(total=len(tasks), desc="synthesizing chapters", unit="chapter")
    if num_workers <= 1:
        for task in tasks:
            _synthesize_chapter_task(task)
            progress.update()
    else:
        # spawn, not fork: the parent may hold threads (torch, tqdm) that fork would copy mid-lock.
        with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
            for _ in pool.imap_unordered(_synthesize_chapter_task, tasks):
                progress.update()
    progress.close()


def summarize(plan: CorpusPlan, librispeech_dir: Path) -> dict:
    """Hours, speakers, chapters and utterances per split and per split x engine, from the FLACs."""
    totals: dict = defaultdict(lambda: {"hours": 0.0, "speakers": set(), "chapters": 0, "utterances": 0,
                                        "utterances_with_phone_times": 0})
    minutes_per_speaker: dict[int, float] = defaultdict(float)
    for chapter in plan.chapters:
        directory = chapter.directory(librispeech_dir)
        seconds = sum(soundfile.info(str(directory / f"{utt_id}.flac")).duration
                      for utt_id, _ in chapter.utterances)
        ctm = directory / f"{chapter.name}.phones.ctm"
        timed = len({line.split(maxsplit=1)[0] for line in ctm.read_text().splitlines()}) if ctm.exists() else 0
        minutes_per_speaker[chapter.speaker_id] += seconds / 60
        for key in (chapter.split, f"{chapter.split}/{chapter.speaker.engine}"):
            entry = totals[key]
            entry["hours"] += seconds / 3600
            entry["speakers"].add(chapter.speaker_id)
            entry["chapters"] += 1
            entry["utterances"] += len(chapter.utterances)
            entry["utterances_with_phone_times"] += timed

    def finish(entry: dict) -> dict:
        return {**entry, "hours": round(entry["hours"], 4), "speakers": len(entry["speakers"])}

    planned = [split for split in (*SPLITS, TRANSFER_SPLIT, NEVER_HEARD_SPLIT) if split in totals]
    splits = {split: finish(totals[split]) for split in planned}
    engines = {split: {e: finish(totals[f"{split}/{e}"]) for e in ENGINES if f"{split}/{e}" in totals}
               for split in planned}
    return {"splits": splits, "engines": engines, "lm_sentences": len(plan.lm_sentences),
            "speaker_minutes": {str(k): round(v, 2) for k, v in sorted(minutes_per_speaker.items())}}


def summary_markdown(summary: dict) -> str:
    """The summary as a markdown table: one row per split and engine, then per split."""
    rows = ["| split | engine | speakers | chapters | utterances | with phone times | hours |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for split in summary["splits"]:
        for name, entry in [*summary["engines"][split].items(), ("all", summary["splits"][split])]:
            label = f"**{name}**" if name == "all" else name
            rows.append(f"| {split} | {label} | {entry['speakers']} | {entry['chapters']} | "
                        f"{entry['utterances']} | {entry['utterances_with_phone_times']} | {entry['hours']:.3f} |")
    tools = f"Synthesized with: {versions_line(summary['tools'])}.\n" if summary.get("tools") else ""
    return "\n".join(rows) + f"\n\nLM text: {summary['lm_sentences']} sentences (no dev/test sentence).\n" + tools


def _speakers_txt(plan: CorpusPlan, summary: dict) -> str:
    lines = ["; Synthesized speakers of asr-kd's embedded corpus (LibriSpeech SPEAKERS.TXT format).",
             "; NAME is the TTS engine, voice, speaking-rate factor and pitch factor.",
             ";ID    |SEX| SUBSET           |MINUTES| NAME"]
    for speaker_id, (split, speaker) in sorted(plan.speakers.items()):
        minutes = summary["speaker_minutes"].get(str(speaker_id), 0.0)
        lines.append(f"{speaker_id:<7}| {speaker.sex} | {split:<17}| {minutes:5.2f} | {speaker.describe()}")
    return "\n".join(lines) + "\n"


def _check_settings(out_dir: Path, settings: dict) -> None:
    """Refuse to resume into a directory made with other settings (it would mix two corpora).

    A corpus made before the never-heard split existed (the same settings without it) is extended:
    its other splits are planned exactly as before, so only the never-heard chapters are new.
    """
    path = out_dir / "synth-config.json"
    if path.exists():
        previous = read_json(path)
        without_never_heard = {**settings, "size": {k: v for k, v in settings["size"].items() if k != "never_heard"}}
        if previous != settings and previous == without_never_heard:
            logger.info("%s: adding the never-heard split %s to this corpus", out_dir, NEVER_HEARD_SPLIT)
            atomic_write_json(path, settings)
        elif previous != settings:
            raise InputError(f"{out_dir} holds a corpus made with other settings ({path}: {previous}); "
                             f"use another --out-dir or the same settings {settings}")
    else:
        atomic_write_json(path, settings)


def synthesize_corpus(out_dir: str | Path, size: str | None = "tiny", hours: float | None = None,
                      seed: int = 0, num_workers: int = 2, transfer_hours: float | None = None) -> dict:
    """Synthesize (or finish) a LibriSpeech-layout corpus under `out_dir` of a named `size` (CORPUS_SIZES) or of
    `hours` of train; returns the summary."""
    start = time.time()
    out_dir = Path(out_dir)
    planned = corpus_size(size, hours, transfer_hours)
    for engine in ENGINES:
        check_engine(engine)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, {"size": planned.settings(), "seed": seed, "plan_version": PLAN_VERSION})
    pool = load_sentence_pool(out_dir / "sentence-pool.tsv")
    plan = plan_corpus([sentence for _, sentence in pool], planned, seed)
    librispeech_dir = out_dir / "LibriSpeech"
    if not (out_dir / "lm-text.txt").exists():
        atomic_write_text(out_dir / "lm-text.txt", "\n".join(plan.lm_sentences) + "\n")

    pending = [c for c in plan.chapters if not _chapter_done(c, librispeech_dir)]
    logger.info("%d of %d chapters to synthesize with %d workers", len(pending), len(plan.chapters), num_workers)
    if pending:
        _speak_all(pending, librispeech_dir, num_workers)

    summary = summarize(plan, librispeech_dir)
    summary["tools"] = debian_package_versions(SYNTH_PACKAGES)  # the audio depends on them (RESULTS.md's provenance)
    atomic_write_text(librispeech_dir / "SPEAKERS.TXT", _speakers_txt(plan, summary))
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_text(out_dir / "summary.md", summary_markdown(summary))
    logger.info("corpus in %s ready after %.1f s", out_dir, time.time() - start)
    return summary
