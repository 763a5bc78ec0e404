"""A GMM-HMM system (tree + transition model + GMMs) and per-transition-id lookup arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np

from asr_kd.gmm.model_io import load_model, load_tree, save_model, save_tree
from asr_kd.utils.io import atomic_path


@dataclass
class TransitionArrays:
    """numpy views of a TransitionModel, indexed by transition-id (entry 0 unused)."""

    pdf: np.ndarray
    phone: np.ndarray
    hmm_state: np.ndarray
    pdf_class: np.ndarray

    @classmethod
    def from_model(cls, tm: khg.TransitionModel) -> "TransitionArrays":
        num = tm.num_transition_ids + 1
        pdf = np.asarray(tm.transition_id_to_pdf_array(), dtype=np.int32)
        state_of = np.asarray(tm.id2state, dtype=np.int64)
        tuples = np.array([t.__getstate__() for t in tm.tuples], dtype=np.int64).reshape(-1, 4)
        phone = np.zeros(num, dtype=np.int32)
        hmm_state = np.zeros(num, dtype=np.int32)
        pdf_class = np.zeros(num, dtype=np.int32)
        topo = tm.topo
        forward_class = {p: [s.forward_pdf_class for s in topo.topology_for_phone(p)] for p in topo.phones}
        for tid in range(1, num):
            ph, hs = tuples[state_of[tid] - 1, :2]
            phone[tid], hmm_state[tid] = ph, hs
            pdf_class[tid] = forward_class[int(ph)][int(hs)]
        return cls(pdf, phone, hmm_state, pdf_class)


@dataclass
class GmmSystem:
    """What `<exp>/gmm/<system>/` holds: `tree` and `final.mdl`."""

    tree: khg.ContextDependency
    transition_model: khg.TransitionModel
    am: khg.AmDiagGmm
    transform: np.ndarray | None = None  # LDA+MLLT matrix over spliced MFCC; None: MFCC + deltas

    def save(self, out_dir: str | Path) -> None:
        """Write `tree`, `final.mat` (if any), then `final.mdl` (last: marks the system complete)."""
        out_dir = Path(out_dir)
        save_tree(self.tree, out_dir / "tree")
        if self.transform is not None:
            with atomic_path(out_dir / "final.mat") as tmp, open(tmp, "wb") as f:
                np.save(f, self.transform)
        save_model(self.transition_model, self.am, out_dir / "final.mdl")

    @classmethod
    def load(cls, sys_dir: str | Path) -> "GmmSystem":
        sys_dir = Path(sys_dir)
        tm, am = load_model(sys_dir / "final.mdl")
        mat = sys_dir / "final.mat"
        transform = np.load(mat) if mat.is_file() else None
        return cls(load_tree(sys_dir / "tree"), tm, am, transform)

    @staticmethod
    def exists(sys_dir: str | Path) -> bool:
        return (Path(sys_dir) / "final.mdl").is_file() and (Path(sys_dir) / "tree").is_file()
