"""asr-kd: knowledge distillation of hybrid DNN-HMM acoustic models."""

__version__ = "0.1.0"
