"""Frame classifiers: the DNN of a hybrid DNN-HMM recogniser, with named presets."""

from asr_kd.models.frame_classifier import FrameClassifier, FrameClassifierConfig
from asr_kd.models.presets import PRESETS, get_preset

__all__ = ["FrameClassifier", "FrameClassifierConfig", "PRESETS", "get_preset"]
