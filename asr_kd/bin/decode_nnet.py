"""`asr-kd decode-nnet`: hybrid decoding with a frame classifier, or an ensemble of them.

The acoustic score of HMM state s at frame t is log p(s | window_t) - log p(s) (posterior divided
by the prior from the training alignments), searched through an HCLG graph with Kaldi's decoder.
With several --model checkpoints the posterior is the ensemble's arithmetic mean (T = 1).

Decoding (Kaldi's decode.sh + score.sh): dev is decoded at every --lm-weights value (acoustic
scale 1/weight; with --extend-lm-weights N, up to N more past an edge that holds the best), the
weight with the fewest dev errors is chosen and every test part is decoded and scored with it (no
sweep of its own). Writes <out-dir>/{dev,test,<part>}/scoring/<lmwt>.txt (Kaldi `text`),
<out-dir>/scoring/ (wer_<lmwt>, per_utt_{dev,test,<part>}.txt, wer_summary.*) and
<out-dir>/results.json (WER, LM weight, RTF, frame accuracy when the cuts carry pdf_ids, model
size, data size, command, hardware).

Data: lhotse cuts with features (--dev-cuts / --test-cuts, e.g. the tri2 alignment cuts), or a
LibriSpeech-layout part directory (--dev-dir / --test-dir, e.g. LibriSpeech/dev-clean), whose
fbank is computed into <out-dir>/data first; audio of such a directory at any sample rate is
resampled to 16 kHz through lhotse (logged, and counted in results.json's data record). Several
test parts may be given: the first is named `test`, each later one by its part
(cuts_test-other.jsonl.gz or LibriSpeech/test-other: `test-other`).

Frame accuracy alone (no decoding): `asr-kd frame-accuracy`.

Examples:
  asr-kd decode-nnet --model exp/nnet/baseline/final.pt --graph-dir exp/gmm/tri2/graph \\
      --transition-model exp/gmm/tri2/final.mdl --cmvn exp/data/fbank/cmvn.json \\
      --dev-cuts exp/gmm/tri2/ali/cuts_dev-clean.jsonl.gz --test-cuts exp/gmm/tri2/ali/cuts_test-clean.jsonl.gz \\
      --lm-weights 8,10,12 --out-dir exp/decode/baseline
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.utils.device import resolve_device
from asr_kd.decode.scorer import HybridScorer, add_amp_option, add_specialist_options, make_scorer
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json, atomic_write_text
from asr_kd.utils.logging import setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd decode-nnet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, nargs="+", required=True,
                   help="FrameClassifier checkpoint(s), or .onnx files from `asr-kd export-model` (run with "
                        "onnxruntime on the CPU); several = an ensemble (arithmetic mean of posteriors)")
    g = p.add_argument_group("decoding")
    g.add_argument("--graph-dir", type=Path, help="directory with HCLG.fst and words.txt (e.g. exp/gmm/tri2/graph)")
    g.add_argument("--transition-model", type=Path, help="final.mdl of the GMM system whose tree made the graph")
    g.add_argument("--cmvn", type=Path, help="the CMVN stats the models' frame bank was built with (cmvn*.json; "
                   "speaker means are taken over each part's own utterances)")
    g.add_argument("--dev-cuts", type=Path, help="dev lhotse cuts with features (LM weight chosen here)")
    g.add_argument("--dev-dir", type=Path, help="or a LibriSpeech-layout dev part directory")
    g.add_argument("--test-cuts", type=Path, nargs="+", default=[],
                   help="test lhotse cuts with features, one or more parts (decoded at dev's LM weight)")
    g.add_argument("--test-dir", type=Path, nargs="+", default=[],
                   help="or LibriSpeech-layout test part directories")
    g.add_argument("--out-dir", type=Path, help="where hypotheses, WER reports and results.json go")
    g.add_argument("--lm-weights", default="10", help="comma-separated LM weights tried on dev (acoustic scale 1/w)")
    g.add_argument("--extend-lm-weights", type=int, default=0,
                   help="when dev's best weight is at an edge of --lm-weights, try up to this many more weights "
                        "beyond it, one spacing apart, until the best is inside the sweep")
    g.add_argument("--beam", type=float, default=13.0)
    g.add_argument("--max-active", type=int, default=7000)
    g.add_argument("--lattice-beam", type=float, default=6.0)
    g.add_argument("--decoder", choices=("lattice-faster", "faster"), default="lattice-faster")
    g.add_argument("--num-workers", type=int, default=2, help="decoding processes")
    g.add_argument("--chunk-utts", type=int, default=200,
                   help="utterances scored by the network at a time (bounds the score matrices' memory)")
    add_amp_option(p, default="none")
    add_specialist_options(p)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch-size", type=int, default=8192, help="frames per forward pass")
    p.add_argument("--num-threads", type=int, default=None,
                   help="intra-op CPU threads of the network (PyTorch and onnxruntime alike; default: theirs), "
                        "so network RTFs of both runtimes compare")
    p.add_argument("--overwrite", action="store_true", help="redo even if the output exists")
    add_trust_pickle_option(p)
    return p


def part_name(source: Path) -> str:
    """A test part's name from its source: `test-other` from LibriSpeech/test-other or cuts_test-other.jsonl.gz."""
    name = source.name
    for suffix in (".gz", ".jsonl"):
        name = name.removesuffix(suffix)
    return name.removeprefix("cuts_")


def test_sources(cuts: Sequence[Path], dirs: Sequence[Path]) -> dict[str, tuple[Path | None, Path | None]]:
    """name -> (cuts, dir) of the test parts: the first is `test` (outputs under <out-dir>/test), the others by
    `part_name`."""
    if cuts and dirs:
        raise InputError("give the test parts either as --test-cuts or as --test-dir, not both")
    sources = [(c, None) for c in cuts] + [(None, d) for d in dirs]
    named: dict[str, tuple[Path | None, Path | None]] = {}
    for i, (c, d) in enumerate(sources):
        name = "test" if i == 0 else part_name(c or d)  # type: ignore[arg-type]
        if name in named or name in ("dev", "scoring", "data", "log"):
            raise InputError(f"{c or d}: a test part named {name!r} clashes with another output of the decode")
        named[name] = (c, d)
    return named


def load_part(cuts_path: Path | None, part_dir: Path | None, work_dir: Path, what: str):
    """A CutSet with features: from a manifest, or made from a LibriSpeech-layout part directory (resampled
    to 16 kHz where its audio has another rate)."""
    from lhotse import CutSet

    if (cuts_path is None) == (part_dir is None):
        raise InputError(f"give exactly one of --{what}-cuts and --{what}-dir")
    if cuts_path is not None:
        if not cuts_path.is_file():
            raise InputError(f"{cuts_path}: no such cuts manifest")
        cuts = CutSet.from_file(cuts_path)
    else:
        from asr_kd.data.features import compute_fbank, cuts_path as fbank_cuts_path
        from asr_kd.data.prepare import prepare_manifests

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


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class PartScores:
    """Score matrices of a part, chunk by chunk, plus frame-accuracy counts where cuts have pdf_ids."""

    def __init__(self, scorer: HybridScorer, cmvn, chunk_utts: int):
        self.scorer, self.cmvn, self.chunk_utts = scorer, cmvn, chunk_utts
        self.nnet_seconds = 0.0
        self.correct = self.labelled = 0

    def chunks(self, cuts) -> Iterator[dict[str, np.ndarray]]:
        """{cut id: (frames, num_pdfs) log-likelihoods} for successive chunks of utterances."""
        from asr_kd.data.cmvn import part_normaliser

        cuts = list(cuts)
        normalise = part_normaliser(cuts, self.cmvn) if self.cmvn is not None else None
        for chunk in _chunks(cuts, self.chunk_utts):
            start = time.perf_counter()
            scores = {}
            for cut in chunk:
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
            self.nnet_seconds += time.perf_counter() - start
            yield scores

    @property
    def frame_accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


def utterance_id(cut) -> str:
    """The utterance id a hypothesis is written under: the supervision's (LibriSpeech's) id, else the cut's."""
    return cut.supervisions[0].id if len(cut.supervisions) == 1 else cut.id


def references(cuts) -> dict[str, list[str]]:
    """Reference words per utterance from the cuts' supervisions."""
    return {utterance_id(c): " ".join(s.text or "" for s in c.supervisions).split() for c in cuts}


def decode_part(scores: PartScores, cuts, graph, tm, opts, lm_weights: Sequence[str], id_to_word,
                out_dir: Path) -> dict:
    """Decode one part at each LM weight into <out_dir>/scoring/<lmwt>.txt; hypotheses, timing, frame accuracy."""
    from asr_kd.decode.decoder import decode_utterances

    hyps: dict[str, dict[str, list[str]]] = {w: {} for w in lm_weights}
    search = {w: 0.0 for w in lm_weights}
    failed: list[str] = []
    audio_seconds = 0.0
    utt_ids = {c.id: utterance_id(c) for c in cuts}
    for chunk in scores.chunks(cuts):
        audio_seconds += sum(m.shape[0] for m in chunk.values()) * 0.01
        for w in lm_weights:
            res = decode_utterances(graph, tm, chunk, replace(opts, acoustic_scale=1.0 / float(w)), desc=f"decode lmwt {w}")
            hyps[w].update((utt_ids[c], words) for c, words in res.words(id_to_word).items())
            search[w] += res.wall_seconds
            failed += [utt_ids[c] for c in res.failed]
    for w in lm_weights:
        atomic_write_text(out_dir / "scoring" / f"{w}.txt",
                          "".join(f"{u} {' '.join(hyps[w][u])}\n".rstrip() + "\n" for u in sorted(hyps[w])))
    return {"audio_seconds": round(audio_seconds, 3), "nnet_seconds": round(scores.nnet_seconds, 3),
            "search_seconds": {w: round(s, 3) for w, s in search.items()}, "failed": sorted(set(failed)),
            "utterances": len(hyps[lm_weights[0]]), "frame_accuracy": scores.frame_accuracy,
            "hyps": hyps}


def _data_size(cuts, part: dict) -> dict:
    from asr_kd.data.features import resampled_rates

    size = {"utterances": part["utterances"], "hours": round(part["audio_seconds"] / 3600, 4),
            "words": sum(len(s.text.split()) for c in cuts for s in c.supervisions if s.text)}
    rates = resampled_rates(cuts)
    if rates:  # source rate -> utterances lhotse resampled to 16 kHz before fbank
        size["resampled_from_hz"] = {str(rate): n for rate, n in sorted(rates.items())}
    return size


def decode(args: argparse.Namespace, device: torch.device) -> None:
    """Decode dev at every LM weight, test at dev's best; write reports and results.json."""
    from asr_kd.data.cmvn import CmvnStats
    from asr_kd.decode.decoder import DecodeOptions, load_graph
    from asr_kd.lang.phones import read_symbol_table
    from asr_kd.gmm.model_io import load_transition_model
    from asr_kd.report.hardware import describe_hardware
    from asr_kd.score.wer import parse_lm_weights, score_dev_test, select_lm_weight, weight_beyond_edge

    for name in ("graph_dir", "transition_model", "out_dir"):
        if getattr(args, name) is None:
            raise InputError(f"decoding needs --{name.replace('_', '-')}")
    out_dir: Path = args.out_dir
    results_path = out_dir / "results.json"
    if results_path.is_file() and not args.overwrite:
        log.info("%s exists: decoding is done (--overwrite redoes it)", results_path)
        return
    lm_weights = parse_lm_weights(args.lm_weights, args.extend_lm_weights)
    setup_logging(out_dir / "log" / "decode.log")
    scorer = make_scorer(args, device)
    cmvn = CmvnStats.load(args.cmvn) if args.cmvn is not None else None
    if cmvn is not None and cmvn.dim != scorer.feat_dim:
        raise InputError(f"{args.cmvn}: CMVN stats of dim {cmvn.dim}, the model takes {scorer.feat_dim}-dim features")
    if not args.transition_model.is_file():
        raise InputError(f"{args.transition_model}: transition model not found")
    tm = load_transition_model(args.transition_model)
    if tm.num_pdfs != scorer.num_outputs:
        raise InputError(f"{args.transition_model}: {tm.num_pdfs} pdfs, the model has {scorer.num_outputs} outputs")
    graph = load_graph(args.graph_dir / "HCLG.fst")
    id_to_word = {i: w for w, i in read_symbol_table(args.graph_dir / "words.txt").items()}
    opts = DecodeOptions(beam=args.beam, max_active=args.max_active, lattice_beam=args.lattice_beam,
                         decoder=args.decoder, num_workers=args.num_workers)

    dev_cuts = load_part(args.dev_cuts, args.dev_dir, out_dir / "data", "dev")
    dev = decode_part(PartScores(scorer, cmvn, args.chunk_utts), dev_cuts, graph, tm, opts, lm_weights,
                      id_to_word, out_dir / "dev")
    dev_refs = references(dev_cuts)
    best, _ = select_lm_weight(dev_refs, dev["hyps"])
    for _ in range(args.extend_lm_weights):
        extra = weight_beyond_edge(list(dev["hyps"]), best)
        if extra is None:
            break
        log.info("dev's best LM weight %s is at the sweep's edge: trying %s", best, extra)
        more = decode_part(PartScores(scorer, cmvn, args.chunk_utts), dev_cuts, graph, tm, opts, [extra],
                           id_to_word, out_dir / "dev")
        dev["hyps"].update(more["hyps"])
        dev["search_seconds"].update(more["search_seconds"])
        dev["failed"] = sorted(set(dev["failed"]) | set(more["failed"]))
        best, _ = select_lm_weight(dev_refs, dev["hyps"])
    if weight_beyond_edge(list(dev["hyps"]), best) is not None:
        log.warning("dev's best LM weight %s is at the edge of the weights tried (%s)", best,
                    ", ".join(sorted(dev["hyps"], key=float)))
    parts = {"dev": (dev, dev_cuts)}
    tests = {}
    for name, (cuts_file, part_dir) in test_sources(args.test_cuts, args.test_dir).items():
        cuts = load_part(cuts_file, part_dir, out_dir / "data", "test")
        part = decode_part(PartScores(scorer, cmvn, args.chunk_utts), cuts, graph, tm, opts, [best],
                           id_to_word, out_dir / name)
        tests[name] = (references(cuts), part.pop("hyps"))
        parts[name] = (part, cuts)
    summary = score_dev_test(out_dir / "scoring", dev_refs, dev.pop("hyps"), more_tests=tests)
    result = {
        "models": [str(p) for p in args.model], "num_models": len(args.model),
        "test_parts": list(tests),
        "specialists": [str(p) for p in args.specialists or []],
        "num_params": scorer.num_params, "num_params_per_model": scorer.num_params // len(args.model),
        "lmwt": summary["lmwt"], "dev_wer_by_lmwt": summary["dev_wer_by_lmwt"],
        "command": "asr-kd decode-nnet " + shlex.join(args.argv),
        "hardware": describe_hardware(), "num_workers": args.num_workers, "num_threads": args.num_threads,
    }
    for name, (part, cuts) in parts.items():
        search = part["search_seconds"][best]
        result[name] = {
            "wer": summary[name]["wer"], "errors": summary[name].get("errors"),
            "frame_accuracy": part["frame_accuracy"], "data": _data_size(cuts, part),
            "failed": part["failed"], "nnet_seconds": part["nnet_seconds"], "search_seconds": search,
            # Real-time factor of the whole hybrid decode at the chosen weight: network + search.
            "rtf": round((part["nnet_seconds"] + search) / max(part["audio_seconds"], 1e-9), 5),
        }
    atomic_write_json(results_path, result)
    log.info("dev WER %.2f%% at LM weight %s%s", result["dev"]["wer"], best,
             "".join(f", {name} WER {result[name]['wer']:.2f}%" for name in tests))


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    args.argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]

    def body() -> None:
        setup_logging()
        if args.num_threads is not None:
            if args.num_threads < 1:
                raise InputError(f"--num-threads must be >= 1, got {args.num_threads}")
            torch.set_num_threads(args.num_threads)
        decode(args, resolve_device(args.device))

    return run_cli(body, "asr-kd decode-nnet", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
