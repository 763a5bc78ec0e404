"""Alignments as lhotse cuts with a `pdf_ids` TemporalArray, and their `info.json`."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from lhotse import CutSet, NumpyHdf5Writer, load_manifest

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path, atomic_write_json, read_json

log = logging.getLogger(__name__)

FRAME_SHIFT = 0.01


def ali_cuts_path(ali_dir: Path, part: str) -> Path:
    return Path(ali_dir) / f"cuts_{part}.jsonl.gz"


def write_alignment_cuts(cuts: CutSet, pdf_ids: dict[str, np.ndarray], ali_dir: str | Path, part: str) -> Path:
    """Cuts that aligned, each with `pdf_ids` (int32, (num_frames,)) stored in `<ali_dir>/pdf_ids_<part>.h5`."""
    ali_dir = Path(ali_dir).resolve()  # manifests must find the .h5 from any working directory
    ali_dir.mkdir(parents=True, exist_ok=True)
    out = []
    with atomic_path(ali_dir / f"pdf_ids_{part}.h5") as h5_tmp:
        with NumpyHdf5Writer(h5_tmp) as writer:
            for cut in cuts:
                if cut.id not in pdf_ids:
                    continue
                ali = pdf_ids[cut.id]
                if len(ali) != cut.num_frames:
                    raise InputError(f"cut {cut.id}: alignment has {len(ali)} frames but the features have "
                                     f"{cut.num_frames}")
                out.append(cut.with_custom("pdf_ids", writer.store_array(
                    cut.id, ali.astype(np.int32), frame_shift=FRAME_SHIFT, temporal_dim=0)))
    # The writer recorded the temporary name; point the manifests at the final file.
    final_h5 = ali_dir / f"pdf_ids_{part}.h5"
    for cut in out:
        cut.custom["pdf_ids"].array.storage_path = str(final_h5)
    target = ali_cuts_path(ali_dir, part)
    with atomic_path(target) as tmp:
        CutSet.from_cuts(out).to_file(tmp)
    return target


def load_alignment_cuts(ali_dir: str | Path, part: str) -> CutSet:
    """The cuts written by `write_alignment_cuts` (`cut.load_custom("pdf_ids")`)."""
    path = ali_cuts_path(Path(ali_dir), part)
    if not path.is_file():
        raise InputError(f"alignment manifest {path} does not exist (run asr_kd.bin.align)")
    return load_manifest(path)


def write_ali_info(ali_dir: str | Path, num_pdfs: int, system: str, failed_by_part: dict[str, list[str]],
                   extra: dict | None = None) -> None:
    """`info.json`: num_pdfs, system, failed (all parts), and per-part details."""
    info = {"num_pdfs": int(num_pdfs), "system": system,
            "failed": sorted({u for ids in failed_by_part.values() for u in ids}),
            "failed_by_part": {p: sorted(ids) for p, ids in failed_by_part.items()}}
    info.update(extra or {})
    atomic_write_json(Path(ali_dir) / "info.json", info)


def read_ali_info(ali_dir: str | Path) -> dict:
    path = Path(ali_dir) / "info.json"
    if not path.is_file():
        raise InputError(f"{path} does not exist (run asr_kd.bin.align)")
    return read_json(path)
