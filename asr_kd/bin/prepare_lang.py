"""Make a Kaldi-layout lang directory (words.txt, phones.txt, topo, L.fst, L_disambig.fst).

Examples:
  asr-kd prepare-lang --corpus-dir data/synth --lang-dir exp/lang
  asr-kd prepare-lang --text exp/lm/transcripts.txt --arpa 3-gram.pruned.1e-7.arpa.gz \
      --lexicon librispeech-lexicon.txt --lang-dir exp/lang --oov-to-unk
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.lang.lexicon import read_word_list
from asr_kd.utils.errors import InputError
from asr_kd.utils.logging import setup_logging


def corpus_text_files(corpus_dir: Path) -> tuple[list[Path], list[Path]]:
    """The transcript files (`*.trans.txt` under LibriSpeech/) and `lm-text.txt` of a corpus."""
    if not corpus_dir.is_dir():
        raise InputError(f"{corpus_dir}: corpus directory not found")
    transcripts = sorted((corpus_dir / "LibriSpeech").glob("*/*/*/*.trans.txt"))
    lm_text = [corpus_dir / "lm-text.txt"] if (corpus_dir / "lm-text.txt").is_file() else []
    if not transcripts and not lm_text:
        raise InputError(f"{corpus_dir}: no LibriSpeech/*/SPK/CHAP/*.trans.txt and no lm-text.txt")
    return transcripts, lm_text


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-kd prepare-lang",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--lang-dir", type=Path, required=True, help="output lang directory")
    parser.add_argument("--corpus-dir", type=Path,
                        help="corpus whose transcripts (LibriSpeech/*/*/*/*.trans.txt) and lm-text.txt give the words")
    parser.add_argument("--text", type=Path, action="append", default=[],
                        help="more text (one sentence a line, plain or .gz) whose words go in the vocabulary; "
                             "repeatable")
    parser.add_argument("--arpa", type=Path,
                        help="an ARPA LM (plain or .gz) whose 1-gram words go in the vocabulary, so that G keeps them")
    parser.add_argument("--lexicon", type=Path,
                        help="lexicon file 'WORD PH1 PH2 ...' (librispeech-lexicon.txt format), CMUdict for the "
                             "words it lacks; default CMUdict alone")
    parser.add_argument("--bpe-vocab-size", type=int, default=0,
                        help="instead of a lexicon, spell words in this many sentencepiece BPE pieces "
                             "(trained on <corpus>/lm-text.txt or the first --text; "
                             "model saved as <lang-dir>/bpe.model)")
    parser.add_argument("--keep-stress", action="store_true", help="keep CMUdict stress digits (AH0, AH1, ...)")
    parser.add_argument("--sil-prob", type=float, default=0.5, help="probability of optional silence after a word")
    parser.add_argument("--oov-to-unk", action="store_true",
                        help="words missing from the lexicon become <UNK> (warned) instead of an error")
    parser.add_argument("--num-sil-states", type=int, default=5,
                        help="emitting states of SIL/SPN: 5 = Kaldi's ergodic silence model, <4 left-to-right")
    parser.add_argument("--position-dependent-phones", action="store_true",
                        help="Kaldi's word-position phones (K_B AE_I T_E, AH_S) and phones/word_boundary.txt")
    parser.add_argument("--num-nonsil-states", type=int, default=3, help="emitting states of speech phones")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()

    def body() -> None:
        from asr_kd.lang import prepare_lang

        if args.corpus_dir is None and not args.text and args.arpa is None:
            raise InputError("give --corpus-dir, --text or --arpa to say which words the lang needs")
        if not 0.0 <= args.sil_prob < 1.0:
            raise InputError(f"--sil-prob must be in [0, 1), got {args.sil_prob}")
        if args.num_sil_states < 1 or args.num_nonsil_states < 1:
            raise InputError("--num-sil-states and --num-nonsil-states must be at least 1")
        words: set[str] = set()
        lm_text: list[Path] = []
        if args.corpus_dir is not None:
            transcripts, lm_text = corpus_text_files(args.corpus_dir)
            words |= read_word_list(transcripts, skip_first_field=True)
            words |= read_word_list(lm_text)
        for path in args.text:
            if not path.is_file():
                raise InputError(f"{path}: text file not found")
        words |= read_word_list(args.text)
        if args.arpa is not None:
            from asr_kd.lang.lm import arpa_unigrams

            words |= arpa_unigrams(args.arpa)
        lexicon, lexicon_name = None, "given lexicon"
        if args.bpe_vocab_size > 0:
            from asr_kd.lang.bpe import bpe_lexicon, bpe_vocab_size, train_bpe

            if args.lexicon is not None:
                raise InputError("give --lexicon or --bpe-vocab-size, not both")
            if not (lm_text or args.text):
                raise InputError("--bpe-vocab-size trains on text: give --text or a --corpus-dir with lm-text.txt")
            bpe_text = (lm_text or args.text)[0]
            model = args.lang_dir / "bpe.model"
            if not model.is_file() or bpe_vocab_size(model) != args.bpe_vocab_size:
                train_bpe(bpe_text, model, args.bpe_vocab_size)
            lexicon, lexicon_name = bpe_lexicon(sorted(words), model), f"BPE model {model}"
        prepare_lang(
            args.lang_dir, words, args.lexicon,
            keep_stress=args.keep_stress, sil_prob=args.sil_prob, oov_to_unk=args.oov_to_unk,
            num_nonsil_states=args.num_nonsil_states, num_sil_states=args.num_sil_states,
            position_dependent=args.position_dependent_phones, lexicon=lexicon, lexicon_name=lexicon_name,
        )

    return run_cli(body, "asr-kd prepare-lang")


if __name__ == "__main__":
    sys.exit(main())
