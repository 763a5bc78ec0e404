"""Model files that cannot run code: safetensors networks, weights-only checkpoints, GMMs as data."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np
import pytest
import torch

from asr_kd.bin import export_model, make_graph
from asr_kd.bin import train as train_cli
from asr_kd.gmm.align import AlignOptions, GraphCompiler, align_one
from asr_kd.gmm.estimate import init_flat_am, mix_up, pdf_loglikes
from asr_kd.gmm.lang_files import load_gmm_lang
from asr_kd.gmm.model_io import load_model, save_model, save_tree
from asr_kd.gmm.system import GmmSystem
from asr_kd.lang import prepare_lang
from asr_kd.lang.lm import make_lang_test, train_arpa
from asr_kd.models import FrameClassifier
from asr_kd.models.frame_classifier import FrameClassifierConfig, read_checkpoint
from asr_kd.train.checkpoint import load_train_state, rng_states, save_checkpoint, set_rng_states
from asr_kd.utils.safe_files import is_safetensors, trust_pickle
from tests.test_frame_bank import NUM_CLASSES, cmvn_of, make_aligned_cuts

WORDS = ["ONE", "TWO", "THREE", "RED", "CAT"]
TINY = FrameClassifierConfig(num_layers=2, hidden_dim=16, left_context=2, right_context=1, feat_dim=5,
                             num_outputs=7, norm="batchnorm", input_norm="layernorm", dropout=0.1)


class Payload:
    """Unpickling this creates `marker` (what a malicious model file would do instead)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _tiny_model(seed: int = 0) -> FrameClassifier:
    torch.manual_seed(seed)
    model = FrameClassifier(TINY)
    model.set_priors(np.arange(TINY.num_outputs) * 10)
    model.train()
    model(torch.randn(64, TINY.context, TINY.feat_dim))  # moves the batch-norm running statistics
    return model.eval()


def test_saved_network_is_safetensors_and_gives_identical_posteriors(tmp_path):
    model = _tiny_model()
    model.save(tmp_path / "final.pt", epoch=3, dev_accuracy=np.float32(0.5))
    assert is_safetensors(tmp_path / "final.pt")
    loaded = FrameClassifier.load(tmp_path / "final.pt")
    feats = torch.randn(40, TINY.feat_dim)
    assert torch.equal(model.log_posteriors(feats), loaded.log_posteriors(feats))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    ckpt = read_checkpoint(tmp_path / "final.pt")
    assert (ckpt["epoch"], ckpt["dev_accuracy"], ckpt["config"]["norm"]) == (3, 0.5, "batchnorm")


def test_training_checkpoint_reads_weights_only_and_restores_every_generator(tmp_path):
    model = _tiny_model()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(8, TINY.context, TINY.feat_dim)).sum().backward()
    optimizer.step()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # a cached Gaussian in python's state
    save_checkpoint(tmp_path / "checkpoint.pt", model, {"rng": [rng_states()], "optimizer": optimizer.state_dict()})
    expected = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3))
    torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # raises if anything but plain data is in it
    _, train_state = load_train_state(tmp_path / "checkpoint.pt")
    set_rng_states(train_state["rng"][0])
    again = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3))
    assert expected[:3] == again[:3] and torch.equal(expected[3], again[3])
    fresh = torch.optim.Adam(model.parameters())
    fresh.load_state_dict(train_state["optimizer"])


def test_network_file_with_a_payload_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    crafted = tmp_path / "final.pt"
    torch.save({"format": "asr_kd.FrameClassifier", "config": {}, "state_dict": {}, "x": Payload(marker)}, crafted)
    for extra, says in (([], "read it only if you trust"), (["--trust-pickle"], "refusing it even with --trust-pickle")):
        rc = export_model.main(["--model", str(crafted), "--onnx", str(tmp_path / "m.onnx"), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and str(crafted) in err and says in err, err
    assert not marker.exists()


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    from asr_kd.data.frame_bank import FrameBank

    root = tmp_path_factory.mktemp("safe_bank")
    cuts = make_aligned_cuts(root / "train", 6)
    for part in ("train", "dev"):
        FrameBank.build(cuts, root / "bank" / part, cmvn=cmvn_of(cuts), num_classes=NUM_CLASSES)
    return root / "bank"


TRAIN_ARGS = ["--model-shape", "tiny", "--num-epochs", "1", "--batch-size", "128", "--device", "cpu", "--amp", "none"]


def test_checkpoint_and_soft_target_manifest_with_payloads_are_refused(bank, tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "final.pt").write_bytes(b"")  # makes the trainer look at checkpoint.pt first
    torch.save({"format": "asr_kd.FrameClassifier", "train_state": {"rng": [Payload(marker)]}}, exp / "checkpoint.pt")
    assert train_cli.main(["--exp-dir", str(exp), "--frame-bank", str(bank), *TRAIN_ARGS]) == 2
    err = capsys.readouterr().err
    assert str(exp / "checkpoint.pt") in err and "--trust-pickle" in err, err

    store = tmp_path / "soft"
    store.mkdir()
    (store / "manifest.json").write_bytes(pickle.dumps(Payload(marker)))
    rc = train_cli.main(["--exp-dir", str(tmp_path / "student"), "--frame-bank", str(bank), "--soft-targets-dir",
                         str(store), *TRAIN_ARGS])
    err = capsys.readouterr().err
    assert rc == 2 and str(store / "manifest.json") in err, err
    assert not marker.exists()


def test_old_pickled_checkpoint_resumes_only_with_trust_pickle(bank, tmp_path, capsys):
    exp = tmp_path / "exp"
    assert train_cli.main(["--exp-dir", str(exp), "--frame-bank", str(bank), *TRAIN_ARGS]) == 0
    # Rewrite checkpoint.pt as the previous version did: numpy's RNG state as a pickled array.
    ckpt = torch.load(exp / "checkpoint.pt", weights_only=True)
    for states in ckpt["train_state"]["rng"]:
        py, nps = states["python"], states["numpy"]
        states["python"] = (py["version"], tuple(py["internal"].tolist()), py["gauss_next"])
        states["numpy"] = (nps["algorithm"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
                           nps["cached_gaussian"])
    torch.save(ckpt, exp / "checkpoint.pt")
    (exp / "final.pt").unlink()  # a finished run whose final.pt is missing rewrites it from checkpoint.pt
    assert train_cli.main(["--exp-dir", str(exp), "--frame-bank", str(bank), *TRAIN_ARGS]) == 2
    assert f"{exp / 'checkpoint.pt'}: a torch file with pickled Python objects" in capsys.readouterr().err
    assert train_cli.main(["--exp-dir", str(exp), "--frame-bank", str(bank), *TRAIN_ARGS, "--trust-pickle"]) == 0
    assert "reading a legacy pickle file" in capsys.readouterr().err
    assert is_safetensors(exp / "final.pt")


@pytest.fixture(scope="module")
def gmm_dir(tmp_path_factory) -> dict:
    """A monophone system with several Gaussians per pdf and trained transitions, and a lang_test dir."""
    d = tmp_path_factory.mktemp("safe_gmm")
    prepare_lang(d / "lang", WORDS)
    (d / "lm.txt").write_text("ONE TWO\nRED CAT\nTHREE RED CAT\n")
    train_arpa(d / "lm.txt", d / "lm.arpa", order=2)
    make_lang_test(d / "lang", d / "lm.arpa", d / "lang_test")
    lang = load_gmm_lang(d / "lang")
    tree = khg.monophone_context_dependency(lang.topo.phones, lang.topo.get_phone_to_num_pdf_classes())
    tm = khg.TransitionModel(tree, lang.topo)
    rng = np.random.default_rng(0)
    am = init_flat_am(tm.num_pdfs, rng.normal(size=(2000, 13)).astype(np.float32))
    mix_up(am, np.full(am.num_pdfs, 100.0), 3 * am.num_pdfs, rng, perturb_factor=0.5)
    tm.mle_update(rng.integers(1, 50, tm.num_transition_ids + 1).astype(np.float64), khg.MleTransitionUpdateConfig())
    system = GmmSystem(tree, tm, am)
    system.save(d / "mono")
    return {"dir": d, "lang": lang, "system": system}


def _state(obj):
    """A binding object's state as nested plain lists (binding objects inside expanded too)."""
    if isinstance(obj, (list, tuple)):
        return [_state(x) for x in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if type(obj).__module__ == "_kaldi_hmm_gmm":
        return _state(obj.__getstate__())
    return obj


def test_gmm_round_trip_gives_identical_likelihoods_and_alignments(gmm_dir):
    original, lang = gmm_dir["system"], gmm_dir["lang"]
    loaded = GmmSystem.load(gmm_dir["dir"] / "mono")
    assert _state(loaded.transition_model) == _state(original.transition_model)
    assert _state(loaded.am) == _state(original.am)
    feats = np.random.default_rng(1).normal(size=(120, 13)).astype(np.float32)
    np.testing.assert_array_equal(pdf_loglikes(loaded.am, feats), pdf_loglikes(original.am, feats))
    words = lang.word_ids("ONE RED CAT")
    alignments = [align_one(GraphCompiler(s.transition_model, s.tree, lang), s.am, feats, words, "utt",
                            AlignOptions(beam=200, retry_beam=400)) for s in (original, loaded)]
    assert alignments[0][0] is not None
    np.testing.assert_array_equal(alignments[0][0], alignments[1][0])
    assert alignments[0][1] == alignments[1][1]


def test_gmm_pickles_need_trust_and_a_payload_never_runs(gmm_dir, tmp_path, capsys):
    system = gmm_dir["system"]
    lang_test = gmm_dir["dir"] / "lang_test"
    model_dir = tmp_path / "mono"
    save_tree(system.tree, model_dir / "tree")
    # The previous format: a pickle of the binding objects.
    (model_dir / "final.mdl").write_bytes(pickle.dumps(
        {"format": "asr_kd.gmm/1", "transition_model": system.transition_model, "am": system.am}))
    args = ["--lang-dir", str(lang_test), "--model-dir", str(model_dir)]
    assert make_graph.main(args) == 2
    assert f"{model_dir / 'final.mdl'}: a GMM model in the old format, a pickle, which can run code" in capsys.readouterr().err
    assert make_graph.main([*args, "--trust-pickle"]) == 0
    assert (model_dir / "graph" / "HCLG.fst").is_file()
    with trust_pickle():
        assert _state(load_model(model_dir / "final.mdl")) == _state((system.transition_model, system.am))

    marker = tmp_path / "payload-ran"
    (model_dir / "final.mdl").write_bytes(pickle.dumps(
        {"format": "asr_kd.gmm/1", "transition_model": Payload(marker), "am": system.am}))
    for extra in ([], ["--trust-pickle"]):
        assert make_graph.main([*args, "--graph-dir", str(tmp_path / "g"), *extra]) == 2
        assert str(model_dir / "final.mdl") in capsys.readouterr().err
    assert not marker.exists()
