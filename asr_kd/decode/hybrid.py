"""One hybrid decoding path for every acoustic model: a part at LM weights, dev's sweep, Kaldi's layout.

A GMM (features scored by its `AmDiagGmm`) and a network (log posteriors minus log priors) are
decoded, scored and recorded the same way, as Kaldi's decode.sh + score.sh do for test sets: dev
is decoded at every LM weight (acoustic scale 1/weight), the weight with the fewest dev errors is
chosen (`asr_kd.score.wer.best_lm_weight`: ties go to the smaller weight), and every test part is
decoded at that weight only (or, with `every_weight`, at each weight dev was decoded at). With more
than one word insertion penalty (`asr_kd.decode.penalty`, score.sh's --word_ins_penalty), dev's sweep
runs once per penalty, and the (penalty, weight) pair with the fewest dev errors decodes the test
parts (ties: the smaller penalty). Under `out_dir`:

  <part>/scoring/<lmwt>.txt   hypotheses, Kaldi `text` ("UTT-ID WORD ..."), for dev, test, test-other ...
  scoring/wer_<lmwt>          dev's WER at each weight (Kaldi compute-wer's lines)
  scoring/per_utt_<part>.txt, scoring/wer_summary.{txt,md,json}   at the chosen weight
  results.json                the chosen weight and penalty, and per part WER, data size, failures, time and RTF
  log/decode.log
  penalty_<p>/dev/scoring/<lmwt>.txt   dev at each penalty, when several are swept (the chosen one's
                              hypotheses are also those in dev/scoring/)

kaldi_hmm_gmm's decoders hand back the best path only (no lattice to rescore), so each LM weight
is a search of its own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from asr_kd.decode.decoder import FRAME_SHIFT, DecodeOptions, DecodeResult, decode_utterances, load_graph
from asr_kd.decode.penalty import add_word_ins_penalty, parse_word_ins_penalties, penalty_beyond_top
from asr_kd.lang.phones import read_symbol_table
from asr_kd.score.wer import compute_wer, parse_lm_weights, score_dev_test, select_lm_weight, weight_beyond_edge
from asr_kd.utils.errors import InputError
from asr_kd.utils.hardware import describe_hardware
from asr_kd.utils.io import atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

Chunk = Mapping[str, np.ndarray]


@dataclass
class SearchConfig:
    """The LM weights tried on dev and Kaldi's search options (names as the decode CLIs' options)."""

    lm_weights: Sequence[str | float] = ("10",)
    extend_lm_weights: int = 0  # while dev's best weight is at an edge, up to this many more, one spacing past it
    every_weight: bool = False  # test parts too at every weight (default: at dev's choice only)
    word_ins_penalties: Sequence[str | float] = ("0",)  # swept on dev with the LM weights (Kaldi: 0 0.5 1)
    extend_word_ins_penalties: int = 0  # while dev's best penalty is the grid's top, up to this many more above it
    beam: float = DecodeOptions.beam
    max_active: int = DecodeOptions.max_active
    lattice_beam: float = DecodeOptions.lattice_beam
    decoder: str = DecodeOptions.decoder
    num_workers: int = DecodeOptions.num_workers

    def weights(self) -> list[str]:
        """The LM weights as file-name strings ('10', '12.5'), validated."""
        return parse_lm_weights(self.lm_weights, self.extend_lm_weights)

    def options(self) -> DecodeOptions:
        """The decoder's options (the acoustic scale is set per LM weight)."""
        return DecodeOptions(beam=self.beam, max_active=self.max_active, lattice_beam=self.lattice_beam,
                             decoder=self.decoder, num_workers=self.num_workers)


@dataclass
class HybridSearch:
    """Kaldi's search through HCLG: score matrices (frames, pdfs), or GMM features scored by `am`."""

    graph: kaldifst.StdFst
    transition_model: khg.TransitionModel
    id_to_word: Mapping[int, str]
    options: DecodeOptions = field(default_factory=DecodeOptions)
    am: khg.AmDiagGmm | None = None

    @classmethod
    def load(cls, graph_dir: str | Path, transition_model: khg.TransitionModel, options: DecodeOptions | None = None,
             am: khg.AmDiagGmm | None = None) -> HybridSearch:
        """The search through `graph_dir`'s HCLG.fst, writing the words of its words.txt."""
        graph_dir = Path(graph_dir)
        words = graph_dir / "words.txt"
        if not words.is_file():
            raise InputError(f"{words}: no such word list (the graph directory make-graph writes has it)")
        id_to_word = {i: w for w, i in read_symbol_table(words).items()}
        return cls(load_graph(graph_dir / "HCLG.fst"), transition_model, id_to_word, options or DecodeOptions(), am)

    def with_word_ins_penalty(self, penalty: float) -> HybridSearch:
        """The same search through a graph that costs `penalty` more per word (itself when the penalty is 0)."""
        if penalty == 0:
            return self
        return replace(self, graph=add_word_ins_penalty(self.graph, self.id_to_word, penalty))

    def decode(self, inputs: Chunk, lm_weight: str, desc: str = "decode") -> DecodeResult:
        """Best paths of `inputs` (utterance id -> matrix) at acoustic scale 1/lm_weight."""
        opts = replace(self.options, acoustic_scale=1.0 / float(lm_weight))
        return decode_utterances(self.graph, self.transition_model, inputs, opts, am=self.am, desc=desc)


@dataclass
class PartInputs:
    """A part to decode: its name in the layout, references, and its acoustic inputs chunk by chunk.

    `chunks()` yields {utterance id: matrix} afresh at each call (a sweep that extends decodes dev again);
    `data` and `facts` add to the part's results.json record (data size facts; the inputs' own numbers).
    """

    name: str
    refs: Mapping[str, Sequence[str]]
    chunks: Callable[[], Iterable[Chunk]]
    data: dict = field(default_factory=dict)
    facts: Callable[[PartDecode], dict] | None = None


@dataclass
class PartDecode:
    """A part decoded at some LM weights: hypotheses (words) and search seconds per weight."""

    name: str
    hyps: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    search_seconds: dict[str, float] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    audio_seconds: float = 0.0
    input_seconds: float = 0.0  # making the inputs: features, or the network's forward passes (first decode)

    def add(self, more: PartDecode) -> None:
        """Take in the weights of another decode of the same part."""
        self.hyps.update(more.hyps)
        self.search_seconds.update(more.search_seconds)
        self.failed |= more.failed

    @property
    def lm_weights(self) -> list[str]:
        """The weights decoded, smallest first."""
        return sorted(self.hyps, key=float)


def kaldi_text(hyps: Mapping[str, Sequence[str]]) -> str:
    """Hypotheses as a Kaldi `text` file: `UTT-ID WORD ...` lines sorted by id, no trailing blank."""
    return "".join(f"{u} {' '.join(hyps[u])}".rstrip() + "\n" for u in sorted(hyps))


def decode_part(search: HybridSearch, part: PartInputs, lm_weights: Sequence[str], out_dir: str | Path) -> PartDecode:
    """Decode one part at each LM weight (acoustic scale 1/weight); write <out_dir>/<part>/scoring/<weight>.txt."""
    decoded = PartDecode(part.name, {w: {} for w in lm_weights}, {w: 0.0 for w in lm_weights})
    chunks = iter(part.chunks())
    while True:
        start = time.perf_counter()
        chunk = next(chunks, None)
        decoded.input_seconds += time.perf_counter() - start
        if chunk is None:
            break
        decoded.audio_seconds += sum(m.shape[0] for m in chunk.values()) * FRAME_SHIFT
        for w in lm_weights:
            res = search.decode(chunk, w, desc=f"{part.name} lmwt {w}")
            decoded.hyps[w].update(res.words(search.id_to_word))
            decoded.search_seconds[w] += res.wall_seconds
            decoded.failed.update(res.failed)
    for w in lm_weights:
        atomic_write_text(Path(out_dir) / part.name / "scoring" / f"{w}.txt", kaldi_text(decoded.hyps[w]))
    return decoded


def sweep_lm_weights(search: HybridSearch, dev: PartInputs, lm_weights: Sequence[str], out_dir: str | Path,
                     extend: int = 0) -> tuple[str, PartDecode]:
    """Dev at every LM weight, then while the best is at an edge up to `extend` more weights one spacing past
    it; returns the chosen weight (fewest errors, ties to the smaller) and the decode."""
    decoded = decode_part(search, dev, lm_weights, out_dir)
    best, scores = select_lm_weight(dev.refs, decoded.hyps)
    for _ in range(extend):
        extra = weight_beyond_edge(decoded.lm_weights, best)
        if extra is None:
            break
        log.info("%s's best LM weight %s is at the sweep's edge: trying %s", dev.name, best, extra)
        decoded.add(decode_part(search, dev, [extra], out_dir))
        best, scores = select_lm_weight(dev.refs, decoded.hyps)
    for w in decoded.lm_weights:
        log.info("%s lmwt %s: %s", dev.name, w, scores[w].summary().splitlines()[0])
    if weight_beyond_edge(decoded.lm_weights, best) is not None:
        log.warning("%s's best LM weight %s is at the edge of the weights tried (%s)", dev.name, best,
                    ", ".join(decoded.lm_weights))
    return best, decoded


@dataclass
class DevChoice:
    """What dev's sweep chose: the word insertion penalty, the search through its graph, the LM weight, dev's
    decode at that penalty, and dev's WER by LM weight at every penalty swept."""

    penalty: str
    search: HybridSearch
    lm_weight: str
    decoded: PartDecode
    wer_by_penalty: dict[str, dict[str, float]]


def sweep_penalties(search: HybridSearch, dev: PartInputs, config: SearchConfig, out_dir: Path) -> DevChoice:
    """Dev's LM-weight sweep at each word insertion penalty of `config`; the pair with the fewest dev errors
    (ties: the smaller penalty, then the smaller weight). While the best penalty is the grid's top, up to
    `config.extend_word_ins_penalties` more are tried, one spacing above it.

    One penalty decodes into `out_dir` itself; several each into `out_dir/penalty_<p>`, and the chosen one's
    hypotheses are written to `out_dir/dev/scoring` too.
    """
    weights = config.weights()
    penalties = parse_word_ins_penalties(config.word_ins_penalties)
    if config.extend_word_ins_penalties < 0:
        raise InputError(f"--extend-word-ins-penalties must be >= 0, got {config.extend_word_ins_penalties}")
    pending, extra = list(penalties), config.extend_word_ins_penalties
    choice, rank, wer_by_penalty = None, None, {}
    while pending:
        p = pending.pop(0)
        searched = search.with_word_ins_penalty(float(p))
        where = out_dir if len(penalties) == 1 else out_dir / f"penalty_{p}"
        best, decoded = sweep_lm_weights(searched, dev, weights, where, config.extend_lm_weights)
        scores = {w: compute_wer(dev.refs, decoded.hyps[w]) for w in decoded.lm_weights}
        wer_by_penalty[p] = {w: round(r.wer, 4) for w, r in scores.items()}
        if rank is None or (scores[best].errors, float(p)) < rank:
            choice, rank = DevChoice(p, searched, best, decoded, wer_by_penalty), (scores[best].errors, float(p))
        if len(penalties) > 1:
            log.info("%s at word insertion penalty %s: WER %.2f%% at LM weight %s", dev.name, p, scores[best].wer, best)
        above = penalty_beyond_top(list(wer_by_penalty), choice.penalty) if not pending else None
        if above is not None and extra > 0:
            log.info("%s's best word insertion penalty %s is the grid's top: trying %s", dev.name, choice.penalty,
                     above)
            pending.append(above)
            extra -= 1
    assert choice is not None  # parse_word_ins_penalties returns at least one
    if penalty_beyond_top(list(wer_by_penalty), choice.penalty) is not None:
        log.warning("%s's best word insertion penalty %s is the top of those tried (%s)", dev.name, choice.penalty,
                    ", ".join(wer_by_penalty))
    if len(penalties) > 1:
        for w in choice.decoded.lm_weights:
            atomic_write_text(out_dir / dev.name / "scoring" / f"{w}.txt", kaldi_text(choice.decoded.hyps[w]))
    return choice


def finished_results(out_dir: str | Path) -> dict | None:
    """The results.json of a decode already done in `out_dir`, else None."""
    path = Path(out_dir) / "results.json"
    return read_json(path) if path.is_file() else None


def decode_dev_test(search: HybridSearch, dev: PartInputs, tests: Sequence[PartInputs], out_dir: str | Path,
                    config: SearchConfig, record: Mapping | None = None, command: str | None = None) -> dict:
    """Kaldi's decode + score.sh for one system: dev swept, test parts at its choice; writes the layout above.

    `config`: the LM weights (extended past an edge holding dev's best), the word insertion penalties and
    whether test parts are decoded at every weight too. `record`: the system's own fields of results.json
    (its models, sizes); `command`: the command recorded with the numbers. Returns what results.json holds.
    """
    out_dir = Path(out_dir)
    names = [dev.name, *(t.name for t in tests)]
    if dev.name != "dev" or len(set(names)) != len(names) or {"scoring", "log", "data"} & set(names) \
            or any(n.startswith("penalty_") for n in names):
        raise InputError(f"part names {names}: dev must be `dev`, and each name differ from the others and from "
                         "scoring, log, data and penalty_*")
    choice = sweep_penalties(search, dev, config, out_dir)
    search, best, dev_decoded = choice.search, choice.lm_weight, choice.decoded
    decoded = {dev.name: dev_decoded}
    for part in tests:
        decoded[part.name] = decode_part(search, part, dev_decoded.lm_weights if config.every_weight else [best],
                                         out_dir)
    summary = score_dev_test(out_dir / "scoring", dev.refs, dev_decoded.hyps,
                             more_tests={t.name: (t.refs, decoded[t.name].hyps) for t in tests})
    result = {**(record or {}), "test_parts": [t.name for t in tests], "lmwt": summary["lmwt"],
              "dev_wer_by_lmwt": summary["dev_wer_by_lmwt"], "word_ins_penalty": choice.penalty,
              "dev_wer_by_penalty": choice.wer_by_penalty, "command": command, "hardware": describe_hardware(),
              "num_workers": search.options.num_workers,
              "search": {"decoder": search.options.decoder, "beam": search.options.beam,
                         "max_active": search.options.max_active, "lattice_beam": search.options.lattice_beam}}
    for part in (dev, *tests):
        result[part.name] = _part_record(part, decoded[part.name], summary, best, is_test=part is not dev)
    atomic_write_json(out_dir / "results.json", result)
    log.info("%s WER %.2f%% at LM weight %s, word insertion penalty %s%s", dev.name, result[dev.name]["wer"], best,
             choice.penalty,
             "".join(f", {t.name} WER {result[t.name]['wer']:.2f}%" for t in tests))
    return result


def _part_record(part: PartInputs, decoded: PartDecode, summary: dict, best: str, is_test: bool) -> dict:
    audio = round(decoded.audio_seconds, 3)
    search = round(decoded.search_seconds[best], 3)
    record = {
        "wer": summary[part.name]["wer"], "errors": summary[part.name]["errors"],
        "data": {"utterances": len(decoded.hyps[best]), "hours": round(audio / 3600, 4),
                 "words": sum(len(words) for words in part.refs.values()), **part.data},
        "failed": sorted(decoded.failed), "search_seconds": search,
        # Real-time factor of the whole hybrid decode at the chosen weight: the inputs (features or
        # network) + the search.
        "rtf": round((decoded.input_seconds + search) / max(audio, 1e-9), 5),
    }
    if is_test and len(decoded.hyps) > 1:  # decoded at every weight
        record["wer_by_lmwt"] = {w: round(compute_wer(part.refs, decoded.hyps[w]).wer, 4) for w in decoded.lm_weights}
    return {**record, **(part.facts(decoded) if part.facts else {})}
