"""Hybrid decoding of acoustic score matrices (or GMMs) against HCLG graphs."""

from asr_kd.decode.decoder import DecodeOptions, DecodeResult, decode_utterances, load_graph
from asr_kd.decode.sweep import sweep_lm_weights, word_error_rate

__all__ = ["DecodeOptions", "DecodeResult", "decode_utterances", "load_graph", "sweep_lm_weights",
           "word_error_rate"]
