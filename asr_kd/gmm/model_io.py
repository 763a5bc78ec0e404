"""Reading and writing GMM-HMM models (`final.mdl`) and context-dependency trees (`tree`).

The tree is stored in Kaldi's own binary format ("\\0B" + ContextDependency::Write), which the
kaldi_hmm_gmm bindings unpickle from raw bytes. The bindings write neither a TransitionModel nor
an AmDiagGmm in Kaldi's formats, so `final.mdl` is data: an `.npz` archive (under that name) of

    meta                      JSON: format tag, the HMM topology (phones, phone -> entry, and per
                              entry its states' pdf classes and transitions), num_pdfs, dim
    tuples                    (S, 4) int32: phone, HMM state, forward pdf, self-loop pdf per
                              transition state
    state2id, id2state, id2pdf_id   int32: the transition model's index maps
    log_probs, non_self_loop_log_probs   float32: log transition probabilities
    gauss_per_pdf             (P,) int64: Gaussians of each pdf
    weights                   (G,) float32: Gaussian weights, pdf after pdf
    inv_vars, means_invvars   (G, D) float32: inverse variances and means times inverse
                              variances (Kaldi's DiagGmm parameters, so a round trip is exact)

read with numpy's pickle-free loader and rebuilt through the bindings. Models written as pickles
before this format are read only with --trust-pickle, and then admit only the bindings' classes.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import kaldi_hmm_gmm as khg
import numpy as np
from _kaldi_hmm_gmm import HmmState, TransitionModelTuple  # not re-exported by kaldi_hmm_gmm

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path
from asr_kd.utils.safe_files import NUMPY_ARRAY_GLOBALS, require_pickle_trust, restricted_loads

MODEL_FORMAT = "asr_kd.gmm/2"
_PICKLE_FORMAT = "asr_kd.gmm/1"  # a pickle of the binding objects: read only with --trust-pickle
# What a `_PICKLE_FORMAT` file refers to: the bindings' model classes and numpy arrays.
_PICKLE_GLOBALS = NUMPY_ARRAY_GLOBALS | {("_kaldi_hmm_gmm", name) for name in
                                         ("TransitionModel", "TransitionModelTuple", "HmmTopology", "HmmState",
                                          "AmDiagGmm")}
_TM_ARRAYS = ("tuples", "state2id", "id2state", "id2pdf_id", "log_probs", "non_self_loop_log_probs")
_AM_ARRAYS = ("gauss_per_pdf", "weights", "inv_vars", "means_invvars")
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


def _from_state(cls: type, state: tuple) -> Any:
    """A binding object rebuilt from its state tuple (pybind11 sets state only on an uninitialised object)."""
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj


def _topology_to_json(topo: khg.HmmTopology) -> dict[str, Any]:
    phones, phone2idx, entries = topo.__getstate__()
    states = [[{"forward_pdf_class": fwd, "self_loop_pdf_class": loop,
                "transitions": [[dst, prob] for dst, prob in transitions]}
               for fwd, loop, transitions in (state.__getstate__() for state in entry)] for entry in entries]
    return {"phones": list(phones), "phone2idx": list(phone2idx), "entries": states}


def _topology_from_json(d: dict[str, Any]) -> khg.HmmTopology:
    entries = []
    for entry in d["entries"]:
        states = []
        for s in entry:
            states.append(_from_state(HmmState, (int(s["forward_pdf_class"]), int(s["self_loop_pdf_class"]),
                                                 [(int(dst), float(prob)) for dst, prob in s["transitions"]])))
        entries.append(states)
    return _from_state(khg.HmmTopology, ([int(p) for p in d["phones"]], [int(i) for i in d["phone2idx"]], entries))


def save_model(transition_model: khg.TransitionModel, am: khg.AmDiagGmm, path: str | Path) -> None:
    """Write the transition model and the GMMs to `path` as data (see the module docstring)."""
    tuples, topo, state2id, id2state, id2pdf_id, num_pdfs, log_probs, non_self_loop = transition_model.__getstate__()
    pdfs = [am.get_pdf(p) for p in range(am.num_pdfs)]
    meta = {"format": MODEL_FORMAT, "topology": _topology_to_json(topo), "num_pdfs": int(num_pdfs),
            "dim": int(am.dim)}
    arrays = {
        "tuples": np.array([t.__getstate__() for t in tuples], dtype=np.int32).reshape(-1, 4),
        "state2id": np.asarray(state2id, dtype=np.int32),
        "id2state": np.asarray(id2state, dtype=np.int32),
        "id2pdf_id": np.asarray(id2pdf_id, dtype=np.int32),
        "log_probs": np.asarray(log_probs, dtype=np.float32),
        "non_self_loop_log_probs": np.asarray(non_self_loop, dtype=np.float32),
        "gauss_per_pdf": np.array([g.num_gauss for g in pdfs], dtype=np.int64),
        # An AmDiagGmm without pdfs (a graph-only model) is allowed: empty arrays.
        "weights": np.concatenate([np.zeros(0, np.float32), *(g.weights for g in pdfs)]).astype(np.float32),
        "inv_vars": np.concatenate([np.zeros((0, am.dim), np.float32), *(g.inv_vars for g in pdfs)]).astype(np.float32),
        "means_invvars": np.concatenate([np.zeros((0, am.dim), np.float32),
                                         *(g.means_invvars for g in pdfs)]).astype(np.float32),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)


def _check_arrays(path: Path, meta: dict[str, Any], a: dict[str, np.ndarray]) -> None:
    """InputError unless the arrays fit together (so the bindings never index out of range)."""
    num_states, num_pdfs, dim = a["tuples"].shape[0], meta["num_pdfs"], meta["dim"]
    num_tids = int(a["state2id"][-1]) - 1 if a["state2id"].size else -1
    total_gauss = int(a["gauss_per_pdf"].sum()) if a["gauss_per_pdf"].size else 0
    problems = [
        (a["tuples"].ndim == 2 and a["tuples"].shape[1] == 4, "tuples are not (S, 4)"),
        (a["state2id"].shape == (num_states + 2,) and num_tids >= 0, "state2id does not have S + 2 entries"),
        (a["id2state"].shape == a["id2pdf_id"].shape == a["log_probs"].shape == (num_tids + 1,),
         "id2state, id2pdf_id and log_probs do not have one entry per transition-id"),
        (a["non_self_loop_log_probs"].shape == (num_states + 1,), "non_self_loop_log_probs does not have S + 1 entries"),
        (a["id2state"].size == 0 or (0 <= a["id2state"].min() and a["id2state"].max() <= num_states),
         "id2state outside the transition states"),
        (a["id2pdf_id"][1:].size == 0 or (0 <= a["id2pdf_id"][1:].min() and a["id2pdf_id"].max() < num_pdfs),
         "id2pdf_id outside the pdfs"),
        (a["tuples"].size == 0 or (a["tuples"][:, 2:].min() >= -1 and a["tuples"][:, 2:].max() < num_pdfs),
         "tuples name pdfs that do not exist"),
        (a["gauss_per_pdf"].ndim == 1 and (a["gauss_per_pdf"] > 0).all(),
         "gauss_per_pdf does not give every pdf at least one Gaussian"),
        (a["weights"].shape == (total_gauss,) and a["inv_vars"].shape == a["means_invvars"].shape == (total_gauss, dim),
         "weights, inv_vars and means_invvars do not match gauss_per_pdf and dim"),
    ]
    bad = [what for ok, what in problems if not ok]
    if bad:
        raise InputError(f"{path}: inconsistent GMM model ({'; '.join(bad)})")


def _model_from_arrays(path: Path, meta: dict[str, Any], a: dict[str, np.ndarray]
                       ) -> tuple[khg.TransitionModel, khg.AmDiagGmm]:
    _check_arrays(path, meta, a)
    topo = _topology_from_json(meta["topology"])
    tuples = [TransitionModelTuple(*map(int, row)) for row in a["tuples"]]
    tm = _from_state(khg.TransitionModel, (
        tuples, topo, a["state2id"].tolist(), a["id2state"].tolist(), a["id2pdf_id"].tolist(), int(meta["num_pdfs"]),
        a["log_probs"].tolist(), a["non_self_loop_log_probs"].tolist()))
    bounds = np.concatenate([[0], np.cumsum(a["gauss_per_pdf"])])
    # The AmDiagGmm state is (weights, inv_vars, means_invvars) of each pdf in turn; gconsts are recomputed.
    am = _from_state(khg.AmDiagGmm, tuple(array[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])
                                          for array in (a["weights"], a["inv_vars"], a["means_invvars"])))
    return tm, am


def _load_legacy_pickle(path: Path) -> tuple[khg.TransitionModel, khg.AmDiagGmm]:
    """A `final.mdl` pickled by earlier versions; only with --trust-pickle, and only the bindings' classes."""
    require_pickle_trust(path, "a GMM model in the old format, a pickle")
    try:
        obj = restricted_loads(path.read_bytes(), _PICKLE_GLOBALS)
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError) as err:
        raise InputError(f"{path}: not a GMM model pickled by asr_kd.gmm, refusing it even with --trust-pickle "
                         f"({err})") from err
    if not isinstance(obj, dict) or obj.get("format") != _PICKLE_FORMAT:
        raise InputError(f"{path} is not a GMM model written by asr_kd.gmm")
    if not isinstance(obj.get("transition_model"), khg.TransitionModel) or not isinstance(obj.get("am"), khg.AmDiagGmm):
        raise InputError(f"{path}: its pickle does not hold a TransitionModel and an AmDiagGmm")
    return obj["transition_model"], obj["am"]


def load_model(path: str | Path) -> tuple[khg.TransitionModel, khg.AmDiagGmm]:
    """Read (TransitionModel, AmDiagGmm) written by `save_model` (or, with --trust-pickle, an old pickle)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            is_pickle = f.read(1) == b"\x80"  # pickle protocol 2 and later
        if is_pickle:
            return _load_legacy_pickle(path)
        raise InputError(f"{path} is not a GMM model written by asr_kd.gmm")
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            arrays = {name: npz[name] for name in (*_TM_ARRAYS, *_AM_ARRAYS)}
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: not a readable GMM model ({err.__class__.__name__}: {err})") from err
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise InputError(f"{path} is not a GMM model written by asr_kd.gmm (format {MODEL_FORMAT!r})")
    try:
        return _model_from_arrays(path, meta, arrays)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: damaged GMM model ({err.__class__.__name__}: {err})") from err


def load_transition_model(path: str | Path) -> khg.TransitionModel:
    """Only the TransitionModel of a `final.mdl`."""
    return load_model(path)[0]
