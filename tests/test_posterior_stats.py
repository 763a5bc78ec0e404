"""egs/synth/local/posterior_stats.py: entropy, largest probability and KL to the prior of known posteriors."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from asr_kd.data.frame_bank import FrameBank
from asr_kd.decode.scorer import HybridScorer
from asr_kd.models import FrameClassifier, shape_config
from tests.recipe_run import REPO

NUM_OUTPUTS = 5


def _posterior_stats():
    spec = importlib.util.spec_from_file_location("posterior_stats", REPO / "egs/synth/local/posterior_stats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.posterior_stats


def _constant_model(path, posterior: np.ndarray, prior_counts: np.ndarray) -> None:
    """A network whose posterior is `posterior` on every frame: zero output weights, log-probability biases."""
    net = FrameClassifier(dataclasses.replace(shape_config("tiny"), num_outputs=NUM_OUTPUTS))
    with torch.no_grad():
        net.output.weight.zero_()
        net.output.bias.copy_(torch.as_tensor(np.log(posterior)))
    net.set_priors(prior_counts)
    net.save(path)


def _entropy(p: np.ndarray) -> float:
    return float(-(p * np.log(p)).sum())


def test_stats_of_one_model_and_of_an_ensembles_mean(tmp_path):
    posterior_stats = _posterior_stats()
    rng = np.random.default_rng(0)
    feat_dim = shape_config("tiny").feat_dim
    feats = [rng.standard_normal((n, feat_dim)).astype(np.float32) for n in (7, 12, 3)]
    labels = [rng.integers(0, NUM_OUTPUTS, len(f)) for f in feats]
    bank = FrameBank.from_arrays(feats, labels, ["a", "b", "c"], tmp_path / "bank", num_classes=NUM_OUTPUTS)
    counts = np.array([10, 20, 30, 25, 15])
    prior = (counts + 1) / (counts + 1).sum()  # set_priors smooths by one count per class
    q1, q2 = np.array([0.6, 0.1, 0.1, 0.1, 0.1]), np.array([0.05, 0.05, 0.1, 0.3, 0.5])
    _constant_model(tmp_path / "m1.pt", q1, counts)
    _constant_model(tmp_path / "m2.pt", q2, counts)

    one = posterior_stats(HybridScorer([tmp_path / "m1.pt"], torch.device("cpu")), bank)
    assert one["entropy"] == pytest.approx(_entropy(q1), rel=1e-5)
    assert one["max_prob"] == pytest.approx(0.6, rel=1e-5)
    assert one["kl_to_prior"] == pytest.approx(float((q1 * np.log(q1 / prior)).sum()), rel=1e-4)

    # Two members: the decoder's arithmetic mean of their posteriors, frame by frame.
    mean = (q1 + q2) / 2
    both = posterior_stats(HybridScorer([tmp_path / "m1.pt", tmp_path / "m2.pt"], torch.device("cpu")), bank)
    assert both["entropy"] == pytest.approx(_entropy(mean), rel=1e-5)
    assert both["max_prob"] == pytest.approx(mean.max(), rel=1e-5)
    assert both["kl_to_prior"] == pytest.approx(float((mean * np.log(mean / prior)).sum()), rel=1e-4)
    assert both["entropy"] > one["entropy"]  # the mean of two different distributions is flatter than the first
