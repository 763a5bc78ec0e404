"""Specialist models (Hinton et al. 2015, Section 5): their class sets, the networks, and their combination.

- `sets`: the class sets the generalist confuses (K-means on its prediction covariance), the sets file.
- `model`: a specialist network (S + dustbin outputs) initialised from the generalist; its checkpoint.
- `combine`: generalist + active specialists at inference, by the KL objective.

Training one specialist uses the trainer, so it lives with it: `asr_kd.train.specialists`.
"""

from asr_kd.distill.specialists.combine import CoverageBreakdown, SpecialistCombiner, attach_specialists
from asr_kd.distill.specialists.model import init_specialist, load_specialist, save_specialist
from asr_kd.distill.specialists.sets import SpecialistSets, collapse, collapse_map, make_specialist_sets

__all__ = ["SpecialistSets", "collapse", "collapse_map", "make_specialist_sets", "init_specialist",
           "load_specialist", "save_specialist", "CoverageBreakdown", "SpecialistCombiner", "attach_specialists"]
