"""FrameClassifier: input shapes, whole-utterance posteriors, checkpoints, model shapes, priors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from asr_kd.models import MODEL_SHAPES, FrameClassifier, FrameClassifierConfig, shape_config
from asr_kd.models.frame_classifier import lifter_projection
from asr_kd.utils.errors import InputError


def small_config(**kw) -> FrameClassifierConfig:
    base = dict(left_context=3, right_context=2, feat_dim=5, num_outputs=7, hidden_dim=16)
    return dataclasses.replace(shape_config("tiny"), **{**base, **kw})


def test_windowed_and_flattened_inputs_give_the_same_logits():
    torch.manual_seed(0)
    model = FrameClassifier(small_config(input_norm="layernorm", norm="layernorm", activation="sigmoid")).eval()
    x = torch.randn(4, 6, 5)
    assert model(x).shape == (4, 7)
    torch.testing.assert_close(model(x), model(x.reshape(4, 30)))
    with pytest.raises(ValueError, match=r"\(B, 6, 5\)"):
        model(torch.randn(4, 7, 5))


def test_posteriors_of_an_utterance_use_edge_repeated_windows():
    torch.manual_seed(0)
    model = FrameClassifier(small_config(dropout=0.3)).train()
    feats = np.random.default_rng(0).standard_normal((9, 5)).astype(np.float32)
    post = model.posteriors(feats, temperature=2.0)
    assert post.shape == (9, 7) and model.training  # eval only for the call
    # Independent construction: window of frame t is feats[clip(t-3 .. t+2)].
    windows = np.stack([feats[np.clip(np.arange(t - 3, t + 3), 0, 8)] for t in range(9)])
    with torch.no_grad():
        expected = torch.softmax(model.eval()(torch.from_numpy(windows)) / 2.0, dim=-1)
    torch.testing.assert_close(post, expected)
    torch.testing.assert_close(post.sum(-1), torch.ones(9))
    torch.testing.assert_close(model.posteriors(torch.from_numpy(feats)[None], 2.0), post)


def test_save_load_round_trip_keeps_weights_and_priors(tmp_path):
    torch.manual_seed(0)
    model = FrameClassifier(small_config(norm="batchnorm"))
    model(torch.randn(8, 30))  # moves batchnorm running stats off their initial values
    counts = np.array([10, 0, 5, 5, 30, 0, 50])
    model.set_priors(counts)
    model.save(tmp_path / "m.pt")
    loaded = FrameClassifier.load(tmp_path / "m.pt")
    assert loaded.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    expected = np.log((counts + 1) / (counts.sum() + len(counts)))
    np.testing.assert_allclose(loaded.log_priors.numpy(), expected, rtol=1e-6)


def _dct_row(k: int, n: int) -> torch.Tensor:
    """Cosine k of the DCT-II over n bins: a frame whose spectrum ripples k half-periods across the bins."""
    return torch.cos(torch.pi * (torch.arange(n) + 0.5) * k / n)


def test_lifter_projection_keeps_the_slow_cosines_and_removes_the_fast_ones():
    p = lifter_projection(40, 13)
    for k in (0, 3, 12):
        torch.testing.assert_close(_dct_row(k, 40) @ p, _dct_row(k, 40), atol=1e-5, rtol=0)
    for k in (13, 20, 39):
        torch.testing.assert_close(_dct_row(k, 40) @ p, torch.zeros(40), atol=1e-5, rtol=0)
    torch.testing.assert_close(lifter_projection(40, 40), torch.eye(40), atol=1e-5, rtol=0)


def test_a_liftered_model_ignores_spectral_fine_structure_and_its_file_does_not_store_the_projection(tmp_path):
    torch.manual_seed(0)
    model = FrameClassifier(small_config(feat_dim=8, input_lifter=3)).eval()
    x = torch.randn(4, 6, 8)
    ripple = _dct_row(5, 8) * torch.randn(4, 6, 1)  # a different amount of a fast ripple on every frame
    with torch.no_grad():
        torch.testing.assert_close(model(x + ripple), model(x), atol=1e-5, rtol=1e-5)
        slow = _dct_row(1, 8) * torch.randn(4, 6, 1)
        assert not torch.allclose(model(x + slow), model(x), atol=1e-3)
    model.save(tmp_path / "m.pt")
    assert "lifter" not in model.state_dict()  # rebuilt from the config, so the file's tensors are a plain model's
    loaded = FrameClassifier.load(tmp_path / "m.pt")
    assert loaded.config.input_lifter == 3
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(InputError, match="input_lifter"):
        small_config(feat_dim=8, input_lifter=9)


def test_loading_into_another_config_names_file_and_fields(tmp_path):
    FrameClassifier(small_config()).save(tmp_path / "m.pt")
    other = FrameClassifier(small_config(dropout=0.1, activation="tanh"))
    with pytest.raises(InputError) as err:
        other.load_weights(tmp_path / "m.pt")
    msg = str(err.value)
    assert str(tmp_path / "m.pt") in msg and "activation" in msg and "dropout" in msg and "hidden_dim" not in msg
    with pytest.raises(InputError, match="num_outputs"):
        FrameClassifier.load(tmp_path / "m.pt", config=small_config(num_outputs=8))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pt"):
        FrameClassifier.load(tmp_path / "junk.pt")


def test_named_shapes_have_the_papers_shape_and_lxw_the_same_window():
    paper = MODEL_SHAPES["paper"]
    assert (paper.num_layers, paper.hidden_dim, paper.left_context, paper.right_context, paper.feat_dim) == (
        8, 2560, 20, 5, 40)
    model = FrameClassifier(shape_config("paper", num_outputs=14000))
    # 26*40*2560 + 7*2560*2560 + 2560*14000 weights plus biases: the paper's ~85M parameters.
    expected = 1040 * 2560 + 2560 + 7 * (2560 * 2560 + 2560) + 2560 * 14000 + 14000
    assert sum(p.numel() for p in model.parameters()) == expected
    tiny, small = MODEL_SHAPES["tiny"], MODEL_SHAPES["small"]
    assert (tiny.num_layers, tiny.hidden_dim, small.num_layers, small.hidden_dim) == (2, 128, 4, 512)
    assert shape_config("3x512") == dataclasses.replace(small, num_layers=3)
    with pytest.raises(InputError, match="unknown model shape"):
        shape_config("huge")


def _layer_rms_and_logit_spread(model: FrameClassifier, x: torch.Tensor) -> tuple[list[float], float]:
    """RMS of each hidden layer's activations, and the logits' spread over inputs (std over the batch)."""
    rms = []
    with torch.no_grad():
        h = x.reshape(x.shape[0], -1)
        for layer in model.hidden:
            h = layer(h)
            if isinstance(layer, torch.nn.ReLU):
                rms.append(h.pow(2).mean().sqrt().item())
        logits = model.output(h)
    return rms, logits.std(dim=0).mean().item()


def test_paper_shape_starts_with_the_signal_alive_through_all_eight_layers():
    torch.manual_seed(0)
    model = FrameClassifier(shape_config("paper"))  # 8 x 2560, 14,000 outputs
    x = torch.randn(256, 26, 40)  # CMVN'd windows: zero mean, unit variance per dimension
    rms, spread = _layer_rms_and_logit_spread(model, x)
    assert len(rms) == 8 and all(0.5 < r < 2.0 for r in rms), rms
    assert 0.1 < spread < 10.0, spread
    # PyTorch's default Linear init loses the signal on the way: the same stack would start dead.
    for layer in [*model.hidden, model.output]:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.Linear.reset_parameters(layer)
    _, default_spread = _layer_rms_and_logit_spread(model, x)
    assert default_spread < 0.01 * spread
