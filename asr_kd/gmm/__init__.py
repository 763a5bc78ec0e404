"""GMM-HMM systems (monophone, decision-tree triphones), forced alignment to pdf-ids per frame."""

from asr_kd.gmm.model_io import load_model, load_transition_model, load_tree
from asr_kd.gmm.stages import GmmConfig, align_parts, train_systems
from asr_kd.gmm.system import GmmSystem

__all__ = ["GmmConfig", "GmmSystem", "align_parts", "load_model", "load_transition_model", "load_tree",
           "train_systems"]
