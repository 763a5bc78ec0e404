"""Frame classifiers: the DNN of a hybrid DNN-HMM recogniser, and its shapes (named, or "LxW")."""

from asr_kd.models.frame_classifier import FrameClassifier, FrameClassifierConfig
from asr_kd.models.shapes import MODEL_SHAPES, NetShape, parse_shape, shape_config

__all__ = ["FrameClassifier", "FrameClassifierConfig", "MODEL_SHAPES", "NetShape", "parse_shape", "shape_config"]
