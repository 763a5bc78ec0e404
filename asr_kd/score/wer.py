"""Word error rate (jiwer alignments) with Kaldi-style reports and LM-weight selection on dev."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Literal, Mapping, Sequence

import jiwer

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

Transcripts = Mapping[str, "str | Sequence[str]"]
_OP_CODE = {"equal": "C", "substitute": "S", "delete": "D", "insert": "I"}
PER_UTT_PREFIX = "per_utt_"


def per_utt_path(scoring_dir: str | os.PathLike, part: str) -> Path:
    """The file in which `score_dev_test` writes a part's per-utterance alignments at the chosen LM weight."""
    return Path(scoring_dir) / f"{PER_UTT_PREFIX}{part}.txt"


@dataclasses.dataclass
class UttErrors:
    """One utterance's alignment: `ops` holds (op, ref word, hyp word), op in C/S/D/I, None for a gap."""

    utt_id: str
    ref: list[str]
    hyp: list[str]
    ops: list[tuple[str, str | None, str | None]]

    def count(self, op: str) -> int:
        """Number of alignment positions with this op (C, S, D or I)."""
        return sum(o == op for o, _, _ in self.ops)

    @property
    def errors(self) -> int:
        """Substitutions + deletions + insertions."""
        return len(self.ops) - self.count("C")


@dataclasses.dataclass
class WerResult:
    """Corpus-level error counts and the per-utterance alignments behind them."""

    num_ref_words: int
    substitutions: int
    deletions: int
    insertions: int
    utterances: list[UttErrors]

    @property
    def errors(self) -> int:
        """Total word errors."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Word error rate in percent (errors / reference words)."""
        return 100.0 * self.errors / max(self.num_ref_words, 1)

    @property
    def num_sentence_errors(self) -> int:
        """Utterances with at least one error."""
        return sum(u.errors > 0 for u in self.utterances)

    @property
    def ser(self) -> float:
        """Sentence error rate in percent."""
        return 100.0 * self.num_sentence_errors / max(len(self.utterances), 1)

    def summary(self) -> str:
        """Kaldi compute-wer's two lines: `%WER ... [ e / n, i ins, d del, s sub ]` and `%SER ...`."""
        return (
            f"%WER {self.wer:.2f} [ {self.errors} / {self.num_ref_words}, {self.insertions} ins, "
            f"{self.deletions} del, {self.substitutions} sub ]\n"
            f"%SER {self.ser:.2f} [ {self.num_sentence_errors} / {len(self.utterances)} ]"
        )

    def to_dict(self) -> dict:
        """Counts and rates (no alignments), for JSON."""
        return {
            "wer": round(self.wer, 4), "errors": self.errors, "num_ref_words": self.num_ref_words,
            "substitutions": self.substitutions, "deletions": self.deletions, "insertions": self.insertions,
            "ser": round(self.ser, 4), "num_utterances": len(self.utterances),
            "num_sentence_errors": self.num_sentence_errors,
        }

    def per_utt_text(self) -> str:
        """Kaldi per_utt style: ref / hyp / op rows aligned in columns, then `#csid` counts."""
        lines = []
        for u in self.utterances:
            cells = [(r or "***", h or "***", op) for op, r, h in u.ops]
            widths = [max(len(r), len(h), len(op)) for r, h, op in cells]
            for name, idx in (("ref", 0), ("hyp", 1), ("op", 2)):
                row = " ".join(c[idx].ljust(w) for c, w in zip(cells, widths)).rstrip()
                lines.append(f"{u.utt_id} {name:<3} {row}".rstrip())
            lines.append(f"{u.utt_id} #csid {u.count('C')} {u.count('S')} {u.count('I')} {u.count('D')}")
        return "\n".join(lines) + "\n"


def _words(text: str | Sequence[str]) -> list[str]:
    return text.split() if isinstance(text, str) else list(text)


def align(utt_id: str, ref: Sequence[str], hyp: Sequence[str]) -> UttErrors:
    """Minimum-edit alignment of two word sequences (jiwer's Levenshtein)."""
    ref, hyp = list(ref), list(hyp)
    if not ref:  # jiwer needs a non-empty reference
        return UttErrors(utt_id, ref, hyp, [("I", None, h) for h in hyp])
    out = jiwer.process_words(" ".join(ref), " ".join(hyp) if hyp else "")
    ops: list[tuple[str, str | None, str | None]] = []
    for chunk in out.alignments[0]:
        op = _OP_CODE[chunk.type]
        r = ref[chunk.ref_start_idx:chunk.ref_end_idx]
        h = hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]
        for i in range(max(len(r), len(h))):
            ops.append((op, r[i] if i < len(r) else None, h[i] if i < len(h) else None))
    return UttErrors(utt_id, ref, hyp, ops)


def compute_wer(refs: Transcripts, hyps: Transcripts,
                missing: Literal["error", "empty"] = "empty") -> WerResult:
    """WER of `hyps` against `refs` (utterance id -> text or word list).

    An utterance without a hypothesis counts as all deletions (`missing="empty"`, logged) or
    raises (`"error"`); a hypothesis without a reference always raises.
    """
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise InputError(f"{len(extra)} hypotheses have no reference (first: {', '.join(extra[:5])})")
    absent = sorted(set(refs) - set(hyps))
    if absent:
        if missing == "error":
            raise InputError(f"{len(absent)} utterances have no hypothesis (first: {', '.join(absent[:5])})")
        logger.warning("%d of %d utterances have no hypothesis and count as all deletions (first: %s)",
                       len(absent), len(refs), ", ".join(absent[:5]))
    utts = [align(u, _words(refs[u]), _words(hyps.get(u, []))) for u in sorted(refs)]
    return WerResult(
        num_ref_words=sum(len(u.ref) for u in utts),
        substitutions=sum(u.count("S") for u in utts),
        deletions=sum(u.count("D") for u in utts),
        insertions=sum(u.count("I") for u in utts),
        utterances=utts,
    )


def read_transcripts(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> dict[str, list[str]]:
    """Read Kaldi `text` / LibriSpeech `trans.txt` files: `UTT-ID WORD WORD ...` per line."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: dict[str, list[str]] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError(f"{path}: transcript file not found")
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                if fields[0] in out:
                    raise InputError(f"{path}:{lineno}: utterance {fields[0]!r} appears twice")
                out[fields[0]] = fields[1:]
    return out


def _lmwt_key(lmwt: str) -> tuple[float, str]:
    try:
        return float(lmwt), lmwt
    except ValueError:
        return float("inf"), lmwt


def best_lm_weight(errors_by_lmwt: Mapping[str, float]) -> str:
    """The one tie rule: the LM weight with the fewest errors (or lowest WER); ties go to the smaller weight."""
    return min(errors_by_lmwt, key=lambda w: (errors_by_lmwt[w], _lmwt_key(w)))


def select_lm_weight(refs: Transcripts, hyps_by_lmwt: Mapping[str, Transcripts]) -> tuple[str, dict[str, WerResult]]:
    """Kaldi score.sh's choice: the LM weight with the lowest WER (ties: the smaller weight)."""
    if not hyps_by_lmwt:
        raise InputError("no hypotheses to choose an LM weight from")
    results = {w: compute_wer(refs, hyps) for w, hyps in hyps_by_lmwt.items()}
    return best_lm_weight({w: r.errors for w, r in results.items()}), results


def parse_lm_weights(values: Sequence[str | float], extend: int = 0) -> list[str]:
    """--lm-weights (one value each, `--lm-weights 9 11`) as the strings used in file names ('10', '12.5'),
    validated, and --extend-lm-weights."""
    text = " ".join(map(str, values))
    try:
        weights = [float(w) for w in values]
    except ValueError as err:
        raise InputError(f"--lm-weights must be numbers separated by spaces: {text!r}") from err
    if not weights or min(weights) <= 0:
        raise InputError(f"--lm-weights must be positive numbers, got {text!r}")
    if extend < 0:
        raise InputError(f"--extend-lm-weights must be >= 0, got {extend}")
    return [f"{w:g}" for w in weights]


def weight_beyond_edge(lm_weights: Sequence[str | float], best: str | float) -> str | None:
    """The LM weight one step past the sweep's edge when `best` is at that edge, else None.

    The step is the sweep's smallest spacing; below the lowest weight it must stay positive. A
    sweep of one weight has no spacing and is not extended. Returned as a file-name string ('7').
    """
    weights = sorted({float(w) for w in lm_weights})
    if len(weights) < 2:
        return None
    step = min(b - a for a, b in zip(weights, weights[1:]))
    if float(best) == weights[0] and weights[0] - step > 0:
        return f"{weights[0] - step:g}"
    if float(best) == weights[-1]:
        return f"{weights[-1] + step:g}"
    return None


def read_hyps_by_lmwt(part_dir: str | os.PathLike) -> dict[str, dict[str, list[str]]]:
    """Hypotheses per LM weight from `<part_dir>/scoring/<lmwt>.txt` (Kaldi `text` format), the layout
    `asr_kd.decode` writes (e.g. exp/decode/baseline/dev)."""
    scoring = Path(part_dir) / "scoring"
    files = {p.stem: p for p in scoring.glob("*.txt") if _lmwt_key(p.stem)[0] != float("inf")}
    if not files:
        raise InputError(f"{scoring}: no <lmwt>.txt hypothesis files")
    return {w: read_transcripts(files[w]) for w in sorted(files, key=_lmwt_key)}


def score_dev_test(
    out_dir: str | os.PathLike,
    dev_refs: Transcripts,
    dev_hyps_by_lmwt: Mapping[str, Transcripts],
    test_refs: Transcripts | None = None,
    test_hyps_by_lmwt: Mapping[str, Transcripts] | None = None,
    more_tests: Mapping[str, tuple[Transcripts, Mapping[str, Transcripts]]] | None = None,
) -> dict:
    """Choose the LM weight on dev, apply it to test (and to each of `more_tests`: name -> (refs, hyps
    by LM weight)); write wer_<lmwt>, per-utt details and summaries.

    Files in `out_dir`: `wer_<lmwt>` (dev, every weight), `per_utt_dev.txt` / `per_utt_test.txt` /
    `per_utt_<name>.txt` (chosen weight), `wer_summary.txt`, `wer_summary.md`, `wer_summary.json`.
    """
    out_dir = Path(out_dir)
    best, dev_results = select_lm_weight(dev_refs, dev_hyps_by_lmwt)
    for lmwt, result in dev_results.items():
        atomic_write_text(out_dir / f"wer_{lmwt}", result.summary() + "\n")
    dev = dev_results[best]
    atomic_write_text(per_utt_path(out_dir, "dev"), dev.per_utt_text())
    by_lmwt = {w: round(dev_results[w].wer, 4) for w in sorted(dev_results, key=_lmwt_key)}
    summary = {"lmwt": best, "dev": dev.to_dict(), "dev_wer_by_lmwt": by_lmwt}
    lines = [f"dev  lmwt={best} (best of {len(dev_results)}) {dev.summary().splitlines()[0]}"]
    rows = [("dev", dev)]
    tests = dict(more_tests or {})
    if test_refs is not None and test_hyps_by_lmwt is not None:
        tests = {"test": (test_refs, test_hyps_by_lmwt), **tests}
    for name, (refs, hyps_by_lmwt) in tests.items():
        if best not in hyps_by_lmwt:
            raise InputError(f"{name} hypotheses have no LM weight {best} (the one chosen on dev)")
        test = compute_wer(refs, hyps_by_lmwt[best])
        atomic_write_text(per_utt_path(out_dir, name), test.per_utt_text())
        summary[name] = test.to_dict()
        lines.append(f"{name} lmwt={best} (chosen on dev) {test.summary().splitlines()[0]}")
        rows.append((name, test))
    atomic_write_text(out_dir / "wer_summary.txt", "\n".join(lines) + "\n")
    md = ["| set | LM weight | WER % | errors / words | ins | del | sub | SER % |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {name} | {best} | {r.wer:.2f} | {r.errors} / {r.num_ref_words} | {r.insertions} | "
           f"{r.deletions} | {r.substitutions} | {r.ser:.2f} |" for name, r in rows]
    atomic_write_text(out_dir / "wer_summary.md", "\n".join(md) + "\n")
    atomic_write_json(out_dir / "wer_summary.json", summary)
    for line in lines:
        logger.info("%s", line)
    return summary
