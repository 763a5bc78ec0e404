"""Scoring: word error rate (`asr_kd.score.wer`) and frame accuracy (`asr_kd.score.frame_accuracy`)."""

from asr_kd.score.wer import WerResult, compute_wer, score_dev_test, select_lm_weight

__all__ = ["WerResult", "compute_wer", "score_dev_test", "select_lm_weight"]
