"""Hybrid decoding against HCLG graphs: one path for GMMs and networks, Kaldi's scoring layout.

`decode_nnet(NnetDecodeConfig(...))` and `decode_gmm(GmmDecodeConfig(...))` decode a system's dev
and test parts; both go through `asr_kd.decode.hybrid` (`decode_part`, `sweep_lm_weights`,
`decode_dev_test`), which any other acoustic scorer can use too.
"""

from asr_kd.decode.decoder import DecodeOptions, DecodeResult, decode_utterances, load_graph
from asr_kd.decode.gmm import GmmDecodeConfig, decode_gmm
from asr_kd.decode.hybrid import (HybridSearch, PartDecode, PartInputs, SearchConfig, decode_dev_test, decode_part,
                                  sweep_lm_weights)
from asr_kd.decode.nnet import NnetDecodeConfig, decode_nnet

__all__ = ["DecodeOptions", "DecodeResult", "decode_utterances", "load_graph", "GmmDecodeConfig", "decode_gmm",
           "HybridSearch", "PartDecode", "PartInputs", "SearchConfig", "decode_dev_test", "decode_part",
           "sweep_lm_weights", "NnetDecodeConfig", "decode_nnet"]
