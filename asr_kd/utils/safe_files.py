"""Model files that cannot run code when read: safetensors + JSON, weights-only torch files, trusted legacy pickles.

Networks are safetensors files whose header metadata holds one JSON document (config, priors are a
tensor, provenance). Training checkpoints are `torch.save` files of tensors and plain containers,
read with `torch.load(weights_only=True)`. Files written before these formats are pickles that can
run code when unpickled: they are read only when the user trusts them (`--trust-pickle`, or
ASR_KD_TRUST_PICKLE=1 in the environment), with a warning naming the file, and even then through
an unpickler that admits only the classes such files hold.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Iterator, Mapping

import numpy as np

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)

TRUST_PICKLE_ENV = "ASR_KD_TRUST_PICKLE"
TRUST_PICKLE_HINT = f"read it only if you trust where it came from, with --trust-pickle (or {TRUST_PICKLE_ENV}=1)"
_META_KEY = "asr_kd"
# What a pickled numpy array refers to (numpy 1.x and 2.x module names).
NUMPY_ARRAY_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
})


def pickle_trusted() -> bool:
    """Whether the user allowed legacy pickle files (ASR_KD_TRUST_PICKLE set, as --trust-pickle does)."""
    return os.environ.get(TRUST_PICKLE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def trust_pickle(enabled: bool = True) -> Iterator[None]:
    """Allow legacy pickle files inside the block (and in processes it starts) when `enabled`."""
    if not enabled:
        yield
        return
    before = os.environ.get(TRUST_PICKLE_ENV)
    os.environ[TRUST_PICKLE_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TRUST_PICKLE_ENV, None)
        else:
            os.environ[TRUST_PICKLE_ENV] = before


def require_pickle_trust(path: str | os.PathLike, what: str) -> None:
    """InputError naming `path` unless legacy pickles are trusted; a warning naming it when they are."""
    if not pickle_trusted():
        raise InputError(f"{path}: {what}, which can run code when it is loaded; {TRUST_PICKLE_HINT}")
    log.warning("%s: reading a legacy pickle file because --trust-pickle was given (%s)", path, what)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the (module, name) globals in `allowed`."""

    def __init__(self, file: io.BufferedIOBase, allowed: Collection[tuple[str, str]], **kwargs: Any):
        super().__init__(file, **kwargs)
        self._allowed = frozenset(allowed)

    def find_class(self, module: str, name: str) -> Any:
        """The global `module.name` if allowed; UnpicklingError otherwise."""
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def restricted_loads(data: bytes, allowed: Collection[tuple[str, str]], encoding: str = "ASCII") -> Any:
    """Unpickle `data` admitting only the `allowed` globals (raises pickle.UnpicklingError otherwise)."""
    return RestrictedUnpickler(io.BytesIO(data), allowed, encoding=encoding).load()


def _legacy_torch_globals() -> list[Any]:
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct, under either version's module name
    return [(reconstruct, "numpy.core.multiarray._reconstruct"), (reconstruct, "numpy._core.multiarray._reconstruct"),
            np.ndarray, np.dtype, type(np.dtype(np.uint32))]  # MT19937's key array is uint32


def load_torch_file(path: str | os.PathLike) -> Any:
    """A `torch.save` file read with weights_only=True (tensors and plain containers only).

    A file that also holds numpy arrays (training checkpoints written before the weights-only
    format kept numpy's RNG state) needs pickle trust, and then admits numpy arrays, nothing more.
    """
    import torch  # only here: the CLIs that import this module for --trust-pickle need no torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        require_pickle_trust(path, "a torch file with pickled Python objects besides tensors (a checkpoint from "
                                   "before the weights-only format?)")
        try:
            with torch.serialization.safe_globals(_legacy_torch_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err2:
            detail = str(err2).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
            raise InputError(f"{path}: holds Python objects this toolkit never wrote ({detail}); refusing it even "
                             "with --trust-pickle") from err2
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise InputError(f"{path}: not a readable torch file ({err.__class__.__name__}: {err})") from err


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether `path` starts like a safetensors file (8-byte header length, then a JSON object)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 0 < struct.unpack("<Q", head[:8])[0] < os.path.getsize(path)


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    """Write `tensors` and the JSON document `meta` as one safetensors file, atomically."""
    from safetensors.torch import save_file

    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {_META_KEY: json.dumps(meta, sort_keys=True, default=_json_default)}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=metadata)


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, JSON metadata) of a file written by `save_safetensors`; InputError if it is not one."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(f"{path}: damaged safetensors file ({err})") from err
    if _META_KEY not in metadata:
        raise InputError(f"{path}: safetensors file without the {_META_KEY!r} metadata this toolkit writes")
    try:
        meta = json.loads(metadata[_META_KEY])
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: its {_META_KEY!r} metadata is not JSON ({err})") from err
    if not isinstance(meta, dict):
        raise InputError(f"{path}: its {_META_KEY!r} metadata is not a JSON object")
    return tensors, meta
