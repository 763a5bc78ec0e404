"""Train an n-gram LM (kaldingram, Kneser-Ney) on the LM text and make <lang-test-dir> = lang + G.fst.

Words outside the lang's words.txt become <UNK> in the LM text first. Writes
<lm-dir>/lm_<order>gram.arpa (full), <lm-dir>/lm_<order>gram_prune<threshold>.arpa (the one G.fst
is made from), <lm-dir>/lm_text.txt and <lm-dir>/info.json (n-gram counts, OOV rate, dev
perplexity of both LMs). With --arpa (plain or .gz, e.g. LibriSpeech's 3-gram.pruned.1e-7.arpa.gz)
that ARPA is G, pruned only when --prune-threshold is given; a .gz one is unpacked into <lm-dir>.

Example:
  asr-kd train-lm --corpus-dir data/synth --lang-dir exp/lang --lm-dir exp/lm --lang-test-dir exp/lang_test
  asr-kd train-lm --arpa 3-gram.pruned.1e-7.arpa.gz --lang-dir exp/lang --lm-dir exp/lm \
      --dev-text dev-clean.txt --dev-has-ids
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json
from asr_kd.utils.logging import setup_logging

logger = logging.getLogger("asr_kd.bin.train_lm")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-kd train-lm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lang-dir", type=Path, required=True, help="lang directory from prepare-lang")
    parser.add_argument("--lm-dir", type=Path, required=True, help="output directory for the ARPA and info.json")
    parser.add_argument("--lang-test-dir", type=Path,
                        help="where to write lang + G.fst (default: <lm-dir>/../lang_test)")
    parser.add_argument("--corpus-dir", type=Path,
                        help="corpus: --text defaults to <corpus>/lm-text.txt and --dev-text to "
                             "the dev-clean transcripts")
    parser.add_argument("--text", type=Path, help="LM training text, one sentence a line (plain or .gz)")
    parser.add_argument("--dev-text", type=Path, action="append", default=[],
                        help="held-out text for perplexity: plain sentences, or Kaldi/LibriSpeech "
                             "'UTT-ID WORD ...' transcripts with --dev-has-ids; repeatable")
    parser.add_argument("--dev-has-ids", action="store_true", help="--dev-text lines start with an utterance id")
    parser.add_argument("--order", type=int, default=3, help="n-gram order (1-5)")
    parser.add_argument("--arpa", type=Path, help="use this ARPA (plain or .gz) instead of training one")
    parser.add_argument("--prune-threshold", type=float, default=None,
                        help="entropy-prune the ARPA for G.fst (like Kaldi's tgsmall; 0 = no pruning); default "
                             "1e-6 for a trained LM (on 2.4M words of LM text it keeps 0.38M of 1.9M n-grams), "
                             "0 for a given --arpa")
    return parser


def read_sentences(paths: Sequence[Path], has_ids: bool) -> list[list[str]]:
    """Word lists of text files; `has_ids` drops the first field (utterance id) of each line."""
    sentences = []
    for path in paths:
        if not Path(path).is_file():
            raise InputError(f"{path}: dev text not found")
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            words = line.split()[1:] if has_ids else line.split()
            if words:
                sentences.append(words)
    return sentences


def describe_lm(arpa: Path, dev: list[list[str]], oov: str, name: str) -> dict:
    """`<name>_ngram_counts` and, given dev sentences, `<name>_dev` perplexity stats of an ARPA."""
    from asr_kd.lang.lm import ArpaLM, perplexity

    lm = ArpaLM.read(arpa)
    out: dict = {f"{name}_ngram_counts": lm.counts}
    if dev:
        stats = perplexity(lm, dev, unk=oov)
        stats["dev_words_not_in_lm"] = sum(w not in lm.vocab for s in dev for w in s)
        out[f"{name}_dev"] = stats
        logger.info("%s LM %s: %s n-grams, dev perplexity %.1f over %d sentences (%d words outside the LM)",
                    name, arpa.name, "/".join(map(str, lm.counts)), stats["ppl"], stats["num_sentences"],
                    stats["dev_words_not_in_lm"])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()

    def body() -> None:
        from asr_kd.lang import Lang
        from asr_kd.lang.lm import make_lang_test, map_text_to_vocab, plain_arpa, prune_arpa, train_arpa

        prune_threshold = args.prune_threshold
        if prune_threshold is None:
            prune_threshold = 0.0 if args.arpa is not None else 1e-6
        if prune_threshold < 0:
            raise InputError(f"--prune-threshold must be >= 0, got {prune_threshold}")
        lang = Lang.load(args.lang_dir)
        lm_dir: Path = args.lm_dir
        text, dev_texts, dev_has_ids = args.text, list(args.dev_text), args.dev_has_ids
        if args.corpus_dir is not None:
            text = text or args.corpus_dir / "lm-text.txt"
            if not dev_texts:
                dev_texts = sorted((args.corpus_dir / "LibriSpeech" / "dev-clean").glob("*/*/*.trans.txt"))
                dev_has_ids = True
        info: dict = {"order": args.order, "prune_threshold": prune_threshold}
        if args.arpa is not None:
            arpa = plain_arpa(args.arpa, lm_dir)
            info["given_arpa"] = str(args.arpa)
        else:
            if text is None:
                raise InputError("give --text (or --corpus-dir) to train on, or --arpa")
            mapped = lm_dir / "lm_text.txt"
            num_words, num_oov = map_text_to_vocab(text, mapped, lang.word2id, lang.oov_word)
            logger.info("LM text %s: %d words, %d (%.2f%%) not in words.txt -> %s",
                        text, num_words, num_oov, 100 * num_oov / num_words, lang.oov_word)
            info.update(text=str(text), train_words=num_words, train_oov_words=num_oov)
            arpa = lm_dir / f"lm_{args.order}gram.arpa"
            if arpa.is_file():
                logger.info("%s exists; not retraining", arpa)
            else:
                train_arpa(mapped, arpa, args.order)
        dev = read_sentences(dev_texts, dev_has_ids) if dev_texts else []
        # Reading the full ARPA first also checks it before kaldingram prune sees it.
        info.update(describe_lm(arpa, dev, lang.oov_word, "full"))
        g_arpa = arpa
        if prune_threshold > 0:
            g_arpa = lm_dir / f"{arpa.stem}_prune{prune_threshold:g}.arpa"
            if not g_arpa.is_file():
                logger.info("pruning %s with threshold %g", arpa, prune_threshold)
                prune_arpa(arpa, g_arpa, prune_threshold)
            info.update(describe_lm(g_arpa, dev, lang.oov_word, "g"))
        info.update(arpa=str(arpa), g_arpa=str(g_arpa))
        lang_test = args.lang_test_dir or lm_dir.parent / "lang_test"
        make_lang_test(args.lang_dir, g_arpa, lang_test)
        info["lang_test_dir"] = str(lang_test)
        atomic_write_json(lm_dir / "info.json", info)

    return run_cli(body, "asr-kd train-lm")


if __name__ == "__main__":
    sys.exit(main())
