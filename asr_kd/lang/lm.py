"""N-gram language models: train an ARPA with kaldingram, check and score it, turn it into G.fst."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Mapping

from asr_kd.lang.lang import Lang
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path, atomic_write_json, read_json, text_lines

logger = logging.getLogger(__name__)

BOS, EOS = "<s>", "</s>"


def map_text_to_vocab(in_path: str | os.PathLike, out_path: str | os.PathLike,
                      vocab: Mapping[str, int], oov: str) -> tuple[int, int]:
    """Copy sentences (plain or .gz text), replacing words outside `vocab` by `oov`; returns (words, replaced)."""
    in_path = Path(in_path)
    if not in_path.is_file():
        raise InputError(f"{in_path}: LM text not found")
    num_words = num_oov = 0
    with atomic_path(out_path) as tmp, open(tmp, "w", encoding="utf-8") as dst:
        for line in text_lines(in_path):
            words = line.split()
            if not words:
                continue
            mapped = [w if w in vocab else oov for w in words]
            num_words += len(words)
            num_oov += sum(w not in vocab for w in words)
            dst.write(" ".join(mapped) + "\n")
    if num_words == 0:
        raise InputError(f"{in_path}: LM text has no words")
    return num_words, num_oov


def sample_sentences(in_path: str | os.PathLike, out_path: str | os.PathLike, num_lines: int = 0) -> int:
    """Copy the non-empty lines of a plain or .gz text to plain `out_path`: all of them (`num_lines`
    0), else every k-th, k = total // num_lines, so that the sample spans the whole text; returns
    the number written."""
    in_path = Path(in_path)
    if not in_path.is_file():
        raise InputError(f"{in_path}: LM text not found")
    every = 1
    if num_lines > 0:
        total = sum(1 for _ in text_lines(in_path))
        every = total // num_lines if total > num_lines else 1
    written = 0
    with atomic_path(out_path) as tmp, open(tmp, "w", encoding="utf-8") as dst:
        for lineno, line in enumerate(text_lines(in_path), start=1):
            if lineno % every == 0 and line.strip():
                dst.write(line if line.endswith("\n") else line + "\n")
                written += 1
    if written == 0:
        raise InputError(f"{in_path}: LM text has no sentences")
    return written


def train_arpa(text: str | os.PathLike, arpa: str | os.PathLike, order: int = 3) -> Path:
    """Train a Kneser-Ney `order`-gram ARPA LM on `text` with kaldingram (a subprocess)."""
    if not 1 <= order <= 5:
        raise InputError(f"n-gram order must be 1..5 (kaldingram), got {order}")
    arpa = Path(arpa)
    with atomic_path(arpa) as tmp:
        _run_kaldingram(["train", "--ngram-order", str(order), "--text", str(text), "--lm", str(tmp)])
    return arpa


def prune_arpa(arpa: str | os.PathLike, pruned: str | os.PathLike, threshold: float) -> Path:
    """Entropy-prune an ARPA (kaldingram, SRILM's criterion): drop n-grams whose removal changes
    perplexity by less than `threshold` (relative). Smaller G, much smaller HCLG."""
    if threshold <= 0:
        raise InputError(f"prune threshold must be positive, got {threshold}")
    pruned = Path(pruned)
    with atomic_path(pruned) as tmp:
        _run_kaldingram(["prune", "--threshold", repr(threshold), "--lm", str(arpa), "--write-lm", str(tmp)])
    return pruned


def _run_kaldingram(args: list[str]) -> None:
    # stderr is left to the terminal: it carries kaldingram's progress bars (minutes on real text).
    logger.info("kaldingram %s", " ".join(args))
    result = subprocess.run([sys.executable, "-m", "kaldingram.cli", *args], stdout=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"kaldingram {args[0]} failed with exit code {result.returncode} (its messages are above)")


@dataclasses.dataclass
class ArpaLM:
    """A back-off n-gram LM read from ARPA text: log10 probabilities and back-off weights."""

    order: int
    logprob: dict[tuple[str, ...], float]
    backoff: dict[tuple[str, ...], float]
    counts: list[int]

    @classmethod
    def read(cls, path: str | os.PathLike) -> "ArpaLM":
        """Read and check an ARPA file; a malformed one raises `InputError` naming the line."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: ARPA file not found")
        declared: dict[int, int] = {}
        logprob: dict[tuple[str, ...], float] = {}
        backoff: dict[tuple[str, ...], float] = {}
        seen: dict[int, int] = {}
        section: str | int | None = None  # None before \data\, "data", n for \n-grams:, "end"
        for lineno, raw in enumerate(text_lines(path), start=1):
            line = raw.strip()
            where = f"{path}:{lineno}"
            if not line:
                continue
            if line == "\\data\\":
                if section is not None:
                    raise InputError(f"{where}: second \\data\\ section")
                section = "data"
            elif line == "\\end\\":
                section = "end"
                break
            elif line.startswith("\\") and line.endswith("-grams:"):
                try:
                    n = int(line[1:-len("-grams:")])
                except ValueError:
                    raise InputError(f"{where}: bad section header {line!r}") from None
                if n not in declared:
                    raise InputError(f"{where}: section {line} was not declared in \\data\\")
                section = n
                seen[n] = 0
            elif section == "data":
                key, _, value = line.partition("=")
                parts = key.split()
                if len(parts) != 2 or parts[0] != "ngram" or not parts[1].isdigit() or not value.strip().isdigit():
                    raise InputError(f"{where}: expected 'ngram N=COUNT' in \\data\\, got {line!r}")
                declared[int(parts[1])] = int(value)
            elif isinstance(section, int):
                fields = line.split()
                n = section
                if len(fields) not in (n + 1, n + 2):
                    raise InputError(f"{where}: a {n}-gram line needs 'logprob w1..w{n} [backoff]', got {line!r}")
                try:
                    lp = float(fields[0])
                    bo = float(fields[n + 1]) if len(fields) == n + 2 else None
                except ValueError:
                    raise InputError(f"{where}: not a number in {line!r}") from None
                ngram = tuple(fields[1:n + 1])
                logprob[ngram] = lp
                if bo is not None:
                    backoff[ngram] = bo
                seen[n] += 1
            else:
                raise InputError(f"{where}: unexpected line {line!r} (is this an ARPA file?)")
        if section != "end":
            raise InputError(f"{path}: no \\end\\ line (truncated ARPA file?)")
        if not declared:
            raise InputError(f"{path}: no \\data\\ section with 'ngram N=COUNT' lines")
        for n, count in sorted(declared.items()):
            if seen.get(n, 0) != count:
                raise InputError(f"{path}: \\data\\ declares {count} {n}-grams but the file has {seen.get(n, 0)}")
        order = max(declared)
        return cls(order=order, logprob=logprob, backoff=backoff, counts=[declared[n] for n in range(1, order + 1)])

    @property
    def vocab(self) -> set[str]:
        """Words with a unigram."""
        return {ng[0] for ng in self.logprob if len(ng) == 1}

    def word_logprob(self, history: tuple[str, ...], word: str) -> float:
        """log10 P(word | history) with back-off; `history` is cut to order-1 words."""
        history = history[len(history) - self.order + 1:] if self.order > 1 else ()
        penalty = 0.0
        while True:
            lp = self.logprob.get(history + (word,))
            if lp is not None:
                return penalty + lp
            if not history:
                raise KeyError(word)
            penalty += self.backoff.get(history, 0.0)
            history = history[1:]


def perplexity(lm: ArpaLM, sentences: Iterable[Iterable[str]], unk: str | None = "<UNK>") -> dict[str, float]:
    """Perplexity over sentences (SRILM convention: `</s>` counts as a word, OOVs are skipped).

    Words the LM lacks become `unk` when the LM has it; otherwise they are OOVs: not scored,
    and the context restarts after them.
    """
    vocab = lm.vocab
    unk = unk if unk in vocab else None
    total = 0.0
    num_words = num_oov = num_sentences = 0
    for sentence in sentences:
        history: tuple[str, ...] = (BOS,)
        num_sentences += 1
        for word in list(sentence) + [EOS]:
            if word not in vocab:
                if unk is None:
                    num_oov += 1
                    history = ()
                    continue
                word = unk
            total += lm.word_logprob(history, word)
            num_words += 1
            history = history + (word,)
    if num_words == 0:
        raise InputError("no words to compute a perplexity on")
    return {
        "ppl": 10 ** (-total / num_words),
        "log10_prob": total,
        "num_sentences": num_sentences,
        "num_scored_tokens": num_words,
        "num_oov": num_oov,
    }


def arpa_unigrams(path: str | os.PathLike) -> set[str]:
    """The words of a plain or .gz ARPA's 1-gram section (read up to its end only), without <s> and </s>."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: ARPA file not found")
    words: set[str] = set()
    in_unigrams = False
    for line in text_lines(path):
        line = line.strip()
        if line == "\\1-grams:":
            in_unigrams = True
        elif in_unigrams and line.startswith("\\"):
            break
        elif in_unigrams and line:
            fields = line.split()
            if len(fields) < 2:
                raise InputError(f"{path}: 1-gram line {line!r} needs 'logprob word [backoff]'")
            words.add(fields[1])
    if not words:
        raise InputError(f"{path}: no \\1-grams: section (is this an ARPA file?)")
    return words - {BOS, EOS}


def plain_arpa(arpa: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """`arpa` itself, or for a .gz one its text unpacked once into `out_dir` (kaldilm and kaldingram read plain files)."""
    arpa = Path(arpa)
    if arpa.suffix != ".gz":
        return arpa
    if not arpa.is_file():
        raise InputError(f"{arpa}: ARPA file not found")
    plain = Path(out_dir) / arpa.stem
    if plain.is_file() and plain.stat().st_mtime_ns >= arpa.stat().st_mtime_ns:
        return plain
    logger.info("unpacking %s -> %s", arpa, plain)
    with atomic_path(plain) as tmp, open(tmp, "w", encoding="utf-8") as dst:
        dst.writelines(text_lines(arpa))
    return plain


def arpa_to_g(arpa: str | os.PathLike, lang: Lang, g_fst: str | os.PathLike) -> Path:
    """G.fst from an ARPA over `lang`'s words.txt; back-off arcs carry `#0` on the input side."""
    import kaldilm

    lm = ArpaLM.read(arpa)  # kaldilm aborts on malformed input; check it here first
    unknown = lm.vocab - set(lang.word2id) - {BOS, EOS}
    if unknown:
        logger.warning("%d LM words are not in %s/words.txt and are dropped from G (first: %s)",
                       len(unknown), lang.dir, " ".join(sorted(unknown)[:10]))
    g_fst = Path(g_fst)
    with atomic_path(g_fst) as tmp:
        kaldilm.arpa2fst(
            input_arpa=str(arpa), output_fst=str(tmp), disambig_symbol="#0",
            read_symbol_table=str(lang.dir / "words.txt"), max_arpa_warnings=0,
        )
    return g_fst


def make_lang_test(lang_dir: str | os.PathLike, arpa: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """`out_dir` = a copy of the lang directory plus `G.fst` made from `arpa`.

    Skipped when `out_dir` was already made from this very ARPA file (path, size, mtime).
    """
    lang_dir, out_dir = Path(lang_dir), Path(out_dir)
    source = {"arpa": str(Path(arpa).resolve()), "size": Path(arpa).stat().st_size,
              "mtime_ns": Path(arpa).stat().st_mtime_ns, "lang_dir": str(lang_dir.resolve())}
    source_path = out_dir / "G_source.json"
    if (out_dir / "G.fst").is_file() and source_path.is_file() and read_json(source_path) == source:
        logger.info("%s/G.fst is up to date; skipping", out_dir)
        return out_dir
    lang = Lang.load(lang_dir)
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    shutil.copytree(lang_dir, tmp_dir)
    arpa_to_g(arpa, lang, tmp_dir / "G.fst")
    atomic_write_json(tmp_dir / "G_source.json", source)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp_dir.rename(out_dir)
    return out_dir
