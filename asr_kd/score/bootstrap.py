"""How sure a WER difference is: bootstrap over the utterances of one test set.

Two systems decoded the same utterances; resampling the utterances with replacement, many times, and
scoring both systems on each resample gives a confidence interval of each WER and of their difference,
and the probability that one system makes fewer errors than the other (Bisani & Ney, "Bootstrap
estimates for confidence intervals in ASR performance evaluation", ICASSP 2004; the measure Kaldi's
compute-wer-bootci prints). It answers whether the test set could have shown the opposite, not whether
another training run would: seeds are a separate spread.

Input: per-utterance error counts, read from the `per_utt_<part>.txt` files that `asr_kd.score.wer`
writes (Kaldi's per_utt layout, one `<utt> #csid C S I D` row per utterance).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from asr_kd.utils.errors import InputError

# utterance id -> (word errors, reference words)
UttCounts = Mapping[str, tuple[int, int]]
_CHUNK = 1000  # resamples drawn at once: a (chunk, utterances) index array


def read_per_utt_counts(path: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """(S + I + D errors, C + S + D reference words) of each utterance of a per_utt file's `#csid` rows."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: per-utterance scoring file not found")
    counts: dict[str, tuple[int, int]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if len(fields) < 2 or fields[1] != "#csid":
                continue
            try:
                c, s, i, d = (int(x) for x in fields[2:])
            except ValueError:
                raise InputError(f"{path}:{lineno}: a #csid row needs four counts (C S I D): "
                                 f"{line.strip()!r}") from None
            if min(c, s, i, d) < 0:
                raise InputError(f"{path}:{lineno}: negative count in {line.strip()!r}")
            if fields[0] in counts:
                raise InputError(f"{path}:{lineno}: utterance {fields[0]!r} appears twice")
            counts[fields[0]] = (s + i + d, c + s + d)
    if not counts:
        raise InputError(f"{path}: no `<utt> #csid C S I D` rows (not a per_utt file of asr-kd score or Kaldi)")
    return counts


@dataclasses.dataclass(frozen=True)
class WerComparison:
    """System A against system B on one test set; WERs in percent, intervals at `confidence`."""

    num_utterances: int
    num_ref_words: int
    errors_a: int
    errors_b: int
    interval_a: tuple[float, float]
    interval_b: tuple[float, float]
    interval_diff: tuple[float, float]  # of WER(B) - WER(A)
    prob_b_better: float  # share of resamples where B makes fewer errors than A
    prob_tie: float  # share where they make as many
    replicates: int
    confidence: float

    @property
    def wer_a(self) -> float:
        """A's WER % on the whole set."""
        return 100.0 * self.errors_a / self.num_ref_words

    @property
    def wer_b(self) -> float:
        """B's WER % on the whole set."""
        return 100.0 * self.errors_b / self.num_ref_words


def _aligned(a: UttCounts, b: UttCounts, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Errors of A, errors of B and reference words, in one utterance order; refuses different test sets."""
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        raise InputError(f"{names[0]} and {names[1]} scored different utterances: {len(only_a)} only in the first "
                         f"(e.g. {', '.join(only_a[:3]) or '-'}), {len(only_b)} only in the second "
                         f"(e.g. {', '.join(only_b[:3]) or '-'})")
    utts = sorted(a)
    differ = [u for u in utts if a[u][1] != b[u][1]]
    if differ:
        raise InputError(f"{names[0]} and {names[1]} have different references for {len(differ)} utterances "
                         f"(e.g. {differ[0]}: {a[differ[0]][1]} against {b[differ[0]][1]} words)")
    words = np.array([a[u][1] for u in utts], dtype=np.int64)
    if words.sum() == 0:
        raise InputError(f"{names[0]}: the references have no words")
    return (np.array([a[u][0] for u in utts], dtype=np.int64), np.array([b[u][0] for u in utts], dtype=np.int64),
            words)


def _resampled_sums(columns: Sequence[np.ndarray], replicates: int, seed: int) -> np.ndarray:
    """(replicates, len(columns)): each column's sum over one resample of its rows, the same rows for every column."""
    rng = np.random.default_rng(seed)
    n = len(columns[0])
    sums = []
    for start in range(0, replicates, _CHUNK):
        idx = rng.integers(0, n, size=(min(_CHUNK, replicates - start), n))
        sums.append(np.stack([column[idx].sum(1) for column in columns], axis=1))
    return np.concatenate(sums)


def _check(replicates: int, confidence: float) -> list[float]:
    """The two tails' quantiles of an interval at `confidence`, after checking the settings."""
    if replicates < 1:
        raise InputError(f"the number of bootstrap replicates must be >= 1, got {replicates}")
    if not 0 < confidence < 1:
        raise InputError(f"the confidence level must be between 0 and 1, got {confidence}")
    return [(1 - confidence) / 2, (1 + confidence) / 2]


def _interval(values: np.ndarray, tails: list[float]) -> tuple[float, float]:
    lo, hi = np.quantile(values, tails)
    return float(lo), float(hi)


def wer_interval(counts: UttCounts, replicates: int = 10000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[float, float, float]:
    """One system's WER % on the whole set and its bootstrap interval (low, high) at `confidence`."""
    tails = _check(replicates, confidence)
    errors = np.array([e for e, _ in counts.values()], dtype=np.int64)
    words = np.array([w for _, w in counts.values()], dtype=np.int64)
    if words.sum() == 0:
        raise InputError("the references have no words")
    rep_errors, rep_words = _resampled_sums([errors, words], replicates, seed).T
    lo, hi = _interval(100.0 * rep_errors / np.maximum(rep_words, 1), tails)
    return 100.0 * errors.sum() / words.sum(), lo, hi


def compare_wer(a: UttCounts, b: UttCounts, replicates: int = 10000, seed: int = 0, confidence: float = 0.95,
                names: tuple[str, str] = ("A", "B")) -> WerComparison:
    """Paired bootstrap of two systems' per-utterance errors on the same utterances (`names` for error messages)."""
    tails = _check(replicates, confidence)
    errors_a, errors_b, words = _aligned(a, b, names)
    rep_a, rep_b, rep_words = _resampled_sums([errors_a, errors_b, words], replicates, seed).T
    rep_words = np.maximum(rep_words, 1)  # a resample of only empty references: WER 0, not a division by zero
    wer_a, wer_b = 100.0 * rep_a / rep_words, 100.0 * rep_b / rep_words
    return WerComparison(
        num_utterances=len(words), num_ref_words=int(words.sum()), errors_a=int(errors_a.sum()),
        errors_b=int(errors_b.sum()), interval_a=_interval(wer_a, tails), interval_b=_interval(wer_b, tails),
        interval_diff=_interval(wer_b - wer_a, tails), prob_b_better=float(np.mean(rep_b < rep_a)),
        prob_tie=float(np.mean(rep_b == rep_a)), replicates=replicates, confidence=confidence)
