"""Hybrid decoding with a GMM system (mono, tri1, tri2): its features scored by its `AmDiagGmm`.

The same path as the networks' (`asr_kd.decode.hybrid`): dev swept over the LM weights, the later
parts decoded at its choice, Kaldi's layout under <exp>/gmm/<system>/decode (default). The graph
is built first when <graph-dir>/HCLG.fst is absent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from asr_kd.decode.cuts import cuts_part, name_test_parts
from asr_kd.decode.hybrid import HybridSearch, PartInputs, SearchConfig, decode_dev_test, finished_results
from asr_kd.gmm.features import compute_gmm_features
from asr_kd.gmm.graph import make_hclg
from asr_kd.gmm.stages import load_cuts, system_config
from asr_kd.gmm.system import GmmSystem
from asr_kd.utils.errors import InputError
from asr_kd.utils.logging import setup_logging

log = logging.getLogger(__name__)


@dataclass
class GmmDecodeConfig:
    """One field per option of `asr-kd decode-gmm` (same names, same defaults)."""

    exp_dir: Path
    system: str = "tri2"  # which system under <exp>/gmm/ decodes
    parts: Sequence[str] = ("dev-clean", "test-clean")  # corpus parts; the first is dev, which chooses the weight
    lang_test_dir: Path | None = None  # with G.fst, for building the graph (default <exp>/lang_test)
    graph_dir: Path | None = None  # where HCLG.fst is or goes (default <exp>/gmm/<system>/graph)
    fbank_dir: Path | None = None  # where cuts_<part>.jsonl.gz are (default <exp>/data/fbank)
    out_dir: Path | None = None  # default <exp>/gmm/<system>/decode
    search: SearchConfig = field(default_factory=SearchConfig)
    overwrite: bool = False  # redo a decode whose results.json exists
    command: str | None = None  # the command line results.json records


def gmm_part(name: str, cuts, system: GmmSystem, cmvn: str) -> PartInputs:
    """A part whose inputs are the system's features (CMVN'd MFCC + deltas, or through its LDA+MLLT transform)."""
    # The features of the whole part at once (speaker CMVN needs every utterance of a speaker), made again for
    # each decode of the part rather than held: a sweep that extends decodes dev again.
    part = cuts_part(name, cuts, lambda: [compute_gmm_features(cuts, cmvn=cmvn, transform=system.transform).feats])
    part.facts = lambda decoded: {"feature_seconds": round(decoded.input_seconds, 3)}
    return part


def decode_gmm(config: GmmDecodeConfig) -> dict:
    """Decode config.parts with a GMM system (dev at every LM weight, the others at its best); results.json's
    content. A decode whose results.json exists is not redone (unless config.overwrite)."""
    config.search.weights()  # bad weights are refused before anything is loaded
    if not config.parts:
        raise InputError("--parts: give at least the dev part")
    exp = Path(config.exp_dir)
    sys_dir = exp / "gmm" / config.system
    out_dir = Path(config.out_dir or sys_dir / "decode")
    done = None if config.overwrite else finished_results(out_dir)
    if done is not None:
        log.info("%s exists: decoding is done (overwrite redoes it)", out_dir / "results.json")
        return done
    setup_logging(out_dir / "log" / "decode.log")
    graph_dir = Path(config.graph_dir or sys_dir / "graph")
    if not (graph_dir / "HCLG.fst").is_file():
        make_hclg(config.lang_test_dir or exp / "lang_test", sys_dir / "tree", sys_dir / "final.mdl", graph_dir)
    system = GmmSystem.load(sys_dir)
    cmvn = system_config(sys_dir).get("cmvn", "speaker")
    search = HybridSearch.load(graph_dir, system.transition_model, config.search.options(), am=system.am)
    fbank_dir = Path(config.fbank_dir or exp / "data" / "fbank")
    dev_part, *test_parts = config.parts
    named = name_test_parts(list(test_parts))
    dev = gmm_part("dev", load_cuts(fbank_dir / f"cuts_{dev_part}.jsonl.gz"), system, cmvn)
    tests = [gmm_part(name, load_cuts(fbank_dir / f"cuts_{part}.jsonl.gz"), system, cmvn) for name, part in named.items()]
    record = {"system": config.system, "model": str(sys_dir / "final.mdl"), "parts": {"dev": dev_part, **named}}
    return decode_dev_test(search, dev, tests, out_dir, config.search, record, config.command)
