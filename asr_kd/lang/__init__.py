"""Lang directories (lexicon, phones, topology, L), language models and decoding graphs."""

from asr_kd.lang.lang import Lang, prepare_lang

__all__ = ["Lang", "prepare_lang"]
