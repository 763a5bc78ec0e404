"""Reading and writing GMM-HMM models (`final.mdl`) and context-dependency trees (`tree`).

The tree is stored in Kaldi's own binary format ("\\0B" + ContextDependency::Write), which the
kaldi_hmm_gmm bindings unpickle from raw bytes. kaldi_hmm_gmm pickles a TransitionModel as a
Python tuple rather than Kaldi bytes, so `final.mdl` is a pickle of both model parts.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path

MODEL_FORMAT = "asr_kd.gmm/1"
_BINARY_HEADER = b"\0B"


def tree_from_bytes(data: bytes) -> khg.ContextDependency:
    """ContextDependency from Kaldi binary bytes (without the "\\0B" header)."""
    ctx = khg.ContextDependency.__new__(khg.ContextDependency)
    ctx.__setstate__((np.frombuffer(data, dtype=np.int8).tolist(),))
    return ctx


def tree_to_bytes(ctx: khg.ContextDependency) -> bytes:
    """Kaldi binary bytes of a ContextDependency (without the "\\0B" header)."""
    return np.asarray(ctx.__getstate__()[0], dtype=np.int64).astype(np.int8).tobytes()


def save_tree(ctx: khg.ContextDependency, path: str | Path) -> None:
    """Write `ctx` as a Kaldi binary tree file."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(_BINARY_HEADER + tree_to_bytes(ctx))


def load_tree(path: str | Path) -> khg.ContextDependency:
    """Read a Kaldi binary tree file written by `save_tree` (or by Kaldi)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"tree file {path} does not exist")
    data = path.read_bytes()
    if not data.startswith(_BINARY_HEADER + b"ContextDependency"):
        raise InputError(f"{path} is not a Kaldi binary tree (ContextDependency) file")
    return tree_from_bytes(data[len(_BINARY_HEADER):])


def save_model(transition_model: khg.TransitionModel, am: khg.AmDiagGmm, path: str | Path) -> None:
    """Write the transition model and the GMMs to `path` (a pickle)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump({"format": MODEL_FORMAT, "transition_model": transition_model, "am": am}, f)


def load_model(path: str | Path) -> tuple[khg.TransitionModel, khg.AmDiagGmm]:
    """Read (TransitionModel, AmDiagGmm) written by `save_model`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f)
    except (pickle.UnpicklingError, EOFError) as err:
        raise InputError(f"{path} is not a GMM model written by asr_kd.gmm ({err})") from err
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise InputError(f"{path} is not a GMM model written by asr_kd.gmm")
    return obj["transition_model"], obj["am"]


def load_transition_model(path: str | Path) -> khg.TransitionModel:
    """Only the TransitionModel of a `final.mdl`."""
    return load_model(path)[0]
