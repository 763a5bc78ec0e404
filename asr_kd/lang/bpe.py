"""BPE units as the "phones" of a lang: words spelt in sentencepiece pieces, no pronunciations needed."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

from asr_kd.lang.lexicon import Lexicon
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path

logger = logging.getLogger(__name__)


def train_bpe(text: str | os.PathLike, model_path: str | os.PathLike, vocab_size: int = 500,
              max_sentences: int = 1_000_000) -> Path:
    """Train a sentencepiece BPE model on `text` (one sentence a line) and write it to `model_path`."""
    import sentencepiece as spm

    text, model_path = Path(text), Path(model_path)
    if not text.is_file():
        raise InputError(f"{text}: BPE training text not found")
    with atomic_path(model_path) as tmp:
        prefix = str(tmp)[: -len(".model")] if str(tmp).endswith(".model") else str(tmp)
        try:
            spm.SentencePieceTrainer.train(
                input=str(text), model_prefix=prefix, vocab_size=vocab_size, model_type="bpe",
                character_coverage=1.0, input_sentence_size=max_sentences, shuffle_input_sentence=True,
                minloglevel=2,
            )
        except RuntimeError as err:  # e.g. a vocabulary larger than the text allows
            raise InputError(f"{text}: sentencepiece could not train a {vocab_size}-piece BPE model: {err}") from err
        Path(prefix + ".model").replace(tmp)
        Path(prefix + ".vocab").unlink(missing_ok=True)
    return model_path


def bpe_vocab_size(model_path: str | os.PathLike) -> int:
    """Number of pieces of a trained sentencepiece model."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(model_path)).get_piece_size()


def piece_to_phone(piece: str) -> str:
    """A piece as a phone name: lower-cased, so that pieces never collide with SIL/SPN/<eps>."""
    return piece.lower()


def bpe_lexicon(words: Iterable[str], model_path: str | os.PathLike) -> Lexicon:
    """Each word spelt as its BPE pieces (one "pronunciation" per word)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    lexicon: Lexicon = {}
    for word in words:
        pieces = sp.encode(word, out_type=str)
        if not pieces:
            raise InputError(f"word {word!r} has no BPE pieces")
        lexicon[word] = [tuple(piece_to_phone(p) for p in pieces)]
    return lexicon
