"""GMM teacher: vectorised likelihoods, posteriors, frame alignment with the bank, mixed GMM+DNN stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from lhotse import CutSet

from asr_kd.bin import make_soft_targets
from asr_kd.data.frame_bank import FrameBank
from asr_kd.distill.gmm_teacher import GmmTeacher, MixedTeacher
from asr_kd.distill.soft_targets import SoftTargetStore
from asr_kd.gmm.estimate import pdf_loglikes
from asr_kd.gmm.features import compute_gmm_features
from asr_kd.gmm.model_io import load_model
from asr_kd.models import FrameClassifier
from asr_kd.utils.errors import InputError


@pytest.fixture(scope="module")
def tri2(tiny_recipe_exp):
    return tiny_recipe_exp / "gmm" / "tri2"


@pytest.fixture(scope="module")
def dev(tiny_recipe_exp, tri2):
    """The tiny dev bank, its alignment cuts and the tri2 GMM features of those cuts."""
    bank = FrameBank.load(tiny_recipe_exp / "bank" / "dev")
    cuts = CutSet.from_file(tri2 / "ali" / "cuts_dev-clean.jsonl.gz").to_eager()
    return bank, cuts


@pytest.fixture(scope="module")
def teacher(tri2, dev):
    gmm = GmmTeacher(tri2)  # default acoustic scale 0.1
    gmm.attach(dev[0], dev[1])
    return gmm


def test_vectorised_loglikes_equal_the_per_pdf_reference(tri2, teacher):
    # estimate.pdf_loglikes: one DiagGmm at a time in float64, written independently of GmmScorer.
    _, am = load_model(tri2 / "final.mdl")
    feats = teacher.feats[:300]
    ref = pdf_loglikes(am, feats.numpy().astype(np.float64))
    got = teacher.scorer.loglikes(feats).numpy()
    # fp32 matmul over [x, x^2] terms of a few hundred: ~1e-4 relative of the largest term.
    assert np.allclose(got, ref, rtol=1e-4, atol=5e-2), np.abs(got - ref).max()


def test_posteriors_sum_to_one_and_follow_the_acoustic_scale(teacher):
    idx = torch.arange(0, 2000, 7)
    logits = teacher.logits(idx)
    post = torch.softmax(logits, dim=1)
    assert torch.allclose(post.sum(1), torch.ones(len(idx)), atol=1e-5)
    # Kaldi's scale flattens them: a smaller scale gives higher entropy than the raw likelihoods.
    raw = torch.softmax(teacher.scorer.loglikes(teacher.feats[idx]) + teacher.log_priors, dim=1)
    entropy = lambda p: -(p * p.clamp_min(1e-30).log()).sum(1).mean()  # noqa: E731
    assert entropy(post) > entropy(raw) + 0.5


def test_argmax_agrees_with_the_forced_alignment_on_most_frames(tiny_recipe_exp, tri2):
    # The labels are this GMM's own Viterbi alignment of its training data: frame by frame its
    # likelihoods must pick the aligned pdf most of the time (chance: the commonest pdf's share).
    bank = FrameBank.load(tiny_recipe_exp / "bank" / "train")
    cuts = CutSet.from_file(tri2 / "ali" / "cuts_train-clean-100.jsonl.gz")
    gmm = GmmTeacher(tri2, acoustic_scale=1.0)
    gmm.attach(bank, cuts)
    n = 8000
    labels = bank.labels[:n].long()
    agree = (gmm.logits(torch.arange(n)).argmax(1) == labels).float().mean().item()
    majority = np.bincount(labels.numpy()).max() / n
    assert agree > 0.5, agree
    assert agree > 10 * majority
    # At Kaldi's 0.1 the prior weighs more, agreement drops but stays far above chance.
    gmm.acoustic_scale = 0.1
    assert (gmm.logits(torch.arange(n)).argmax(1) == labels).float().mean().item() > 10 * majority


def test_a_frame_count_mismatch_names_the_cut(tri2, dev, teacher):
    bank, cuts = dev
    feats = dict(compute_gmm_features(cuts, cmvn=teacher.cmvn, transform=teacher.transform).feats)
    victim = bank.cut_ids[3]
    feats[victim] = feats[victim][:-2]
    with pytest.raises(InputError, match=victim):
        GmmTeacher(tri2).attach(bank, feats)
    del feats[victim]
    with pytest.raises(InputError, match=f"cut {victim}.*not in"):
        GmmTeacher(tri2).attach(bank, feats)


def _reference_gmm_log_posteriors(tri2, cuts, cut_id, acoustic_scale) -> np.ndarray:
    """GMM frame log-posteriors of one cut from the per-pdf reference and the alignment's counts."""
    tm, am = load_model(tri2 / "final.mdl")
    feats = compute_gmm_features(cuts, cmvn="speaker", transform=np.load(tri2 / "final.mat")).feats[cut_id]
    tid_to_pdf = np.asarray(tm.transition_id_to_pdf_array())
    with np.load(tri2 / "ali_train.npz") as alis:
        pdfs = np.concatenate([tid_to_pdf[alis[k]] for k in alis.files])
    prior = (np.bincount(pdfs, minlength=am.num_pdfs) + 1.0) / (len(pdfs) + am.num_pdfs)
    logits = acoustic_scale * pdf_loglikes(am, feats.astype(np.float64)) + np.log(prior)
    return logits


def test_weighted_gmm_and_dnn_store_equals_the_hand_computed_mean(tiny_recipe_exp, tri2, dev, tmp_path):
    bank, cuts = dev
    member = tiny_recipe_exp / "nnet" / "member1" / "final.pt"
    out = tmp_path / "soft_mix"
    T, scale, w_gmm = 2.0, 0.1, 0.3
    argv = ["--teacher", str(tri2), str(member), "--teacher-weights", "3", "7", "--frame-bank", str(bank.directory),
            "--gmm-cuts", str(tri2 / "ali" / "cuts_dev-clean.jsonl.gz"), "--gmm-acoustic-scale", str(scale),
            "--temperature", str(T), "--top-k", str(bank.num_classes), "--device", "cpu", "--amp", "none",
            "--out-dir", str(out)]
    assert make_soft_targets.main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (gmm_record,) = manifest["teacher"]["gmm_teachers"]
    assert gmm_record["acoustic_scale"] == scale and gmm_record["position"] == 0
    assert manifest["teacher"]["weights"] == pytest.approx([0.3, 0.7])

    # Hand computation for utterance 2: softmax at T of each teacher, then 0.3 / 0.7.
    u = 2
    cut_id = bank.cut_ids[u]
    gmm_logits = _reference_gmm_log_posteriors(tri2, cuts, cut_id, scale)
    gmm_post = torch.softmax(torch.from_numpy(gmm_logits) / T, dim=1)
    feats, _ = bank.utterance(u)
    dnn_post = FrameClassifier.load(member).eval().posteriors(torch.from_numpy(feats), temperature=T).double()
    expected = w_gmm * gmm_post + (1 - w_gmm) * dnn_post
    start, end = int(bank.utt_offsets[u]), int(bank.utt_offsets[u + 1])
    stored = SoftTargetStore.load(out).lookup(torch.arange(start, end)).double()
    # fp16 storage: ~5e-4 relative per probability.
    assert torch.allclose(stored, expected, atol=2e-3), (stored - expected).abs().max()
    # Neither teacher alone explains the store (the weights matter).
    assert (stored - gmm_post).abs().max() > 1e-2 and (stored - dnn_post).abs().max() > 1e-2

    # Another acoustic scale is another teacher: the finished store refuses it.
    argv[argv.index("--gmm-acoustic-scale") + 1] = "0.2"
    assert make_soft_targets.main(argv) == 2
    assert SoftTargetStore.load(out, expect_teacher=[tri2, member]).num_frames == bank.num_frames
    other = tiny_recipe_exp / "nnet" / "member2" / "final.pt"
    with pytest.raises(InputError, match="teacher differs"):
        SoftTargetStore.load(out, expect_teacher=[tri2, other])


def test_gmm_alone_is_a_teacher_with_no_context(tri2, dev):
    bank, cuts = dev
    mixed = MixedTeacher.load([tri2])
    assert mixed.context == (0, 0) and mixed.num_members == 1
    mixed.attach(bank, cuts)
    idx = torch.arange(10, 20)
    x = bank.splice(idx, 0, 0)
    probs = mixed.soft_targets(x, idx, temperature=2.0)
    direct = torch.softmax(mixed.members[0].logits(idx) / 2.0, dim=1)
    assert torch.allclose(probs, direct, atol=1e-6)
    with pytest.raises(InputError, match="bank indices"):
        mixed.member_logits(x)
