"""Hybrid decoding with a frame classifier, an ensemble of them (mean posterior) or a generalist + specialists.

The acoustic score of HMM state s at frame t is log p(s | window_t) - log p(s): the posterior divided
by the prior from the training alignments. Parts are decoded through `asr_kd.decode.hybrid` (its
layout and LM-weight choice); their results.json records add the models, their size, each part's
frame accuracy (where the cuts carry pdf_ids) and the network's seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from asr_kd.data.cmvn import CmvnStats, part_normaliser
from asr_kd.decode.cuts import cuts_part, load_part, name_test_parts
from asr_kd.decode.hybrid import HybridSearch, PartInputs, SearchConfig, decode_dev_test, finished_results
from asr_kd.decode.scorer import HybridScorer, load_scorer
from asr_kd.gmm.model_io import load_transition_model
from asr_kd.utils.device import resolve_device
from asr_kd.utils.errors import InputError
from asr_kd.utils.logging import setup_logging

log = logging.getLogger(__name__)


@dataclass
class NnetDecodeConfig:
    """One field per option of `asr-kd decode-nnet` (same names, same defaults)."""

    model: Sequence[Path]  # checkpoints or .onnx files; several = an ensemble (arithmetic mean of posteriors)
    graph_dir: Path  # HCLG.fst and words.txt
    transition_model: Path  # final.mdl of the GMM system whose tree made the graph
    out_dir: Path
    cmvn: Path | None = None  # the stats the models' frame bank was built with
    dev_cuts: Path | None = None  # dev: lhotse cuts with features, or
    dev_dir: Path | None = None  # a LibriSpeech-layout part directory (fbank computed into <out_dir>/data)
    test_cuts: Sequence[Path] = ()
    test_dir: Sequence[Path] = ()
    search: SearchConfig = field(default_factory=SearchConfig)
    chunk_utts: int = 200  # utterances scored by the network at a time (bounds the score matrices' memory)
    specialists: Sequence[Path] = ()  # specialists of the one model (the generalist)
    specialist_top_n: int = 1
    combine_steps: int = 20
    device: str = "auto"
    amp: str = "none"
    batch_size: int = 8192
    num_threads: int | None = None  # intra-op CPU threads of the network (PyTorch and onnxruntime)
    overwrite: bool = False  # redo a decode whose results.json exists
    command: str | None = None  # the command line results.json records


class PartScores:
    """Score matrices of a part, chunk by chunk, plus frame-accuracy counts where cuts have pdf_ids."""

    def __init__(self, scorer: HybridScorer, cmvn: CmvnStats | None, chunk_utts: int):
        self.scorer, self.cmvn, self.chunk_utts = scorer, cmvn, chunk_utts
        self.correct = self.labelled = 0

    def chunks(self, cuts) -> Iterator[dict[str, np.ndarray]]:
        """{cut id: (frames, num_pdfs) log-likelihoods} for successive chunks of utterances."""
        cuts = list(cuts)
        normalise = part_normaliser(cuts, self.cmvn) if self.cmvn is not None else None
        for i in range(0, len(cuts), self.chunk_utts):
            scores = {}
            for cut in cuts[i:i + self.chunk_utts]:
                feats = cut.load_features()
                if feats.shape[1] != self.scorer.feat_dim:
                    raise InputError(f"cut {cut.id}: features of dim {feats.shape[1]}, the model expects "
                                     f"{self.scorer.feat_dim}")
                logp = self.scorer.log_posteriors(normalise(cut, feats) if normalise is not None else feats)
                if not np.isfinite(logp).all():
                    raise InputError(f"cut {cut.id}: the model's scores hold NaN or inf "
                                     f"({cut.features.storage_path}; --model {', '.join(map(str, self.scorer.paths))})")
                if cut.custom and "pdf_ids" in cut.custom:
                    labels = np.asarray(cut.load_custom("pdf_ids"))
                    if labels.shape == (logp.shape[0],):
                        self.correct += int((logp.argmax(1) == labels).sum())
                        self.labelled += labels.size
                scores[cut.id] = (logp - self.scorer.log_priors).astype(np.float32)
            yield scores

    @property
    def frame_accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


def network_part(name: str, cuts, scorer: HybridScorer, cmvn: CmvnStats | None, chunk_utts: int) -> PartInputs:
    """A part whose inputs are the network's scores; its record adds frame accuracy and the network's seconds."""
    scores = PartScores(scorer, cmvn, chunk_utts)
    part = cuts_part(name, cuts, lambda: scores.chunks(cuts))
    # A sweep that extends scores dev again: both counts grow alike, the accuracy stays.
    part.facts = lambda decoded: {"frame_accuracy": scores.frame_accuracy,
                                  "nnet_seconds": round(decoded.input_seconds, 3)}
    return part


def decode_nnet(config: NnetDecodeConfig) -> dict:
    """Decode dev at every LM weight and the test parts at dev's best into config.out_dir; results.json's content.

    A decode whose results.json exists is not redone (unless config.overwrite).
    """
    config.search.weights()  # bad weights are refused before anything is loaded
    out_dir = Path(config.out_dir)
    done = None if config.overwrite else finished_results(out_dir)
    if done is not None:
        log.info("%s exists: decoding is done (overwrite redoes it)", out_dir / "results.json")
        return done
    if config.test_cuts and config.test_dir:
        raise InputError("give the test parts either as --test-cuts or as --test-dir, not both")
    setup_logging(out_dir / "log" / "decode.log")
    if config.num_threads is not None:
        if config.num_threads < 1:
            raise InputError(f"--num-threads must be >= 1, got {config.num_threads}")
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    scorer = load_scorer([Path(m) for m in config.model], device, config.batch_size, config.num_threads, config.amp,
                         config.specialists, config.specialist_top_n, config.combine_steps)
    cmvn = CmvnStats.load(config.cmvn) if config.cmvn is not None else None
    if cmvn is not None and cmvn.dim != scorer.feat_dim:
        raise InputError(f"{config.cmvn}: CMVN stats of dim {cmvn.dim}, the model takes {scorer.feat_dim}-dim features")
    if not Path(config.transition_model).is_file():
        raise InputError(f"{config.transition_model}: transition model not found")
    tm = load_transition_model(config.transition_model)
    if tm.num_pdfs != scorer.num_outputs:
        raise InputError(f"{config.transition_model}: {tm.num_pdfs} pdfs, the model has {scorer.num_outputs} outputs")
    search = HybridSearch.load(config.graph_dir, tm, config.search.options())

    data_dir = out_dir / "data"
    dev = network_part("dev", load_part(config.dev_cuts, config.dev_dir, data_dir, "dev"), scorer, cmvn,
                       config.chunk_utts)
    as_cuts = bool(config.test_cuts)
    tests = [network_part(name, load_part(source if as_cuts else None, None if as_cuts else source, data_dir, "test"),
                          scorer, cmvn, config.chunk_utts)
             for name, source in name_test_parts([Path(p) for p in config.test_cuts or config.test_dir]).items()]
    record = {"models": [str(p) for p in config.model], "num_models": len(config.model),
              "specialists": [str(p) for p in config.specialists or ()], "num_params": scorer.num_params,
              "num_params_per_model": scorer.num_params // len(config.model), "num_threads": config.num_threads}
    return decode_dev_test(search, dev, tests, out_dir, config.search, record, config.command)
