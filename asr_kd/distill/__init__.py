"""Distillation: losses, schedules, ensemble teachers and stored soft targets."""

from asr_kd.distill.ensemble import EnsembleTeacher, average_posteriors, ensemble_frame_accuracy
from asr_kd.distill.losses import distillation_loss, logit_matching_loss, soft_cross_entropy, soft_kl_divergence
from asr_kd.distill.schedules import DistillationSchedule, parse_schedule
from asr_kd.distill.soft_targets import SoftTargetStore

__all__ = [
    "EnsembleTeacher",
    "average_posteriors",
    "ensemble_frame_accuracy",
    "distillation_loss",
    "logit_matching_loss",
    "soft_cross_entropy",
    "soft_kl_divergence",
    "DistillationSchedule",
    "parse_schedule",
    "SoftTargetStore",
]
