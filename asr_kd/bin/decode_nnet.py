"""`asr-kd decode-nnet`: hybrid decoding with a frame classifier, or an ensemble of them.

The acoustic score of HMM state s at frame t is log p(s | window_t) - log p(s) (posterior divided
by the prior from the training alignments), searched through an HCLG graph with Kaldi's decoder.
With several --model checkpoints the posterior is the ensemble's arithmetic mean (T = 1).

Decoding (Kaldi's decode.sh + score.sh, the same path as `asr-kd decode-gmm`): dev is decoded at
every --lm-weights value (acoustic scale 1/weight; with --extend-lm-weights N, up to N more past an
edge that holds the best), the weight with the fewest dev errors is chosen (ties: the smaller) and
every test part is decoded and scored with it (no sweep of its own; --every-weight decodes them at
every weight too). --word-ins-penalties 0 0.5 1 sweeps dev at each word insertion penalty as well (put
into the graph: the decoders keep no lattice) and keeps the pair with the fewest dev errors, trying up to
--extend-word-ins-penalties N more above a top that holds the best; each penalty's dev decode lands in
<out-dir>/penalty_<p>/. Writes <out-dir>/{dev,test,<part>}/scoring/<lmwt>.txt (Kaldi `text`),
<out-dir>/scoring/ (wer_<lmwt>, per_utt_{dev,test,<part>}.txt, wer_summary.*) and
<out-dir>/results.json (WER, LM weight, RTF, frame accuracy when the cuts carry pdf_ids, model
size, data size, command, hardware). A decode whose results.json exists is not redone (--overwrite).

Data: lhotse cuts with features (--dev-cuts / --test-cuts, e.g. the tri2 alignment cuts), or a
LibriSpeech-layout part directory (--dev-dir / --test-dir, e.g. LibriSpeech/dev-clean), whose
fbank is computed into <out-dir>/data first; audio of such a directory at any sample rate is
resampled to 16 kHz through lhotse (logged, and counted in results.json's data record). Several
test parts may be given: the first is named `test`, each later one by its part
(cuts_test-other.jsonl.gz or LibriSpeech/test-other: `test-other`).

Frame accuracy alone (no decoding): `asr-kd frame-accuracy`. From Python: asr_kd.decode.decode_nnet.

Examples:
  asr-kd decode-nnet --model exp/nnet/baseline/final.pt --graph-dir exp/gmm/tri2/graph \\
      --transition-model exp/gmm/tri2/final.mdl --cmvn exp/data/fbank/cmvn.json \\
      --dev-cuts exp/gmm/tri2/ali/cuts_dev-clean.jsonl.gz --test-cuts exp/gmm/tri2/ali/cuts_test-clean.jsonl.gz \\
      --lm-weights 8 10 12 --out-dir exp/decode/baseline
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_search_options, add_trust_pickle_option, config_from_args, run_cli
from asr_kd.bin.scorer_options import add_amp_option, add_specialist_options
from asr_kd.decode.nnet import NnetDecodeConfig, decode_nnet
from asr_kd.decode.hybrid import SearchConfig
from asr_kd.utils.errors import InputError
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    d = NnetDecodeConfig(model=[], graph_dir=Path(), transition_model=Path(), out_dir=Path())
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
    g.add_argument("--chunk-utts", type=int, default=d.chunk_utts,
                   help="utterances scored by the network at a time (bounds the score matrices' memory)")
    add_search_options(p, d.search)
    add_amp_option(p, default=d.amp)
    add_specialist_options(p)
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="frames per forward pass")
    p.add_argument("--num-threads", type=int, default=d.num_threads,
                   help="intra-op CPU threads of the network (PyTorch and onnxruntime alike; default: theirs), "
                        "so network RTFs of both runtimes compare")
    add_trust_pickle_option(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]

    def body() -> None:
        setup_logging()
        for name in ("graph_dir", "transition_model", "out_dir"):
            if getattr(args, name) is None:
                raise InputError(f"decoding needs --{name.replace('_', '-')}")
        config = config_from_args(NnetDecodeConfig, args)
        config.search = config_from_args(SearchConfig, args)
        config.specialists = args.specialists or []
        config.command = "asr-kd decode-nnet " + shlex.join(argv)
        decode_nnet(config)

    return run_cli(body, "asr-kd decode-nnet", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
