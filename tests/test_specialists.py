"""Specialists (Hinton et al. 2015, Section 5): class sets, dustbin init, training, KL combination."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from asr_kd.bin.train import main as train_main
from asr_kd.data.frame_bank import FrameBank
from asr_kd.distill.specialists.combine import SpecialistCombiner, active_specialists, combine_kl
from asr_kd.distill.specialists.model import (dustbin_log_correction, hidden_activations, init_specialist,
                                              load_specialist, matched_dustbin_correction, save_specialist)
from asr_kd.distill.specialists.sets import (SpecialistSets, collapse, collapse_map, kmeans, make_specialist_sets,
                                             prediction_covariance)
from asr_kd.models import FrameClassifier, FrameClassifierConfig
from asr_kd.models.frame_classifier import read_checkpoint
from asr_kd.train.specialists import SpecialistTraining, train_specialist
from asr_kd.utils.errors import InputError

GROUPS = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
NUM_CLASSES = 12
FEAT_DIM = 6


def block_covariance(groups, noise=0.02, seed=0):
    """A covariance whose classes co-vary within their group only, plus small symmetric noise."""
    c = sum(len(g) for g in groups)
    cov = np.zeros((c, c))
    for g in groups:
        cov[np.ix_(g, g)] = 1.0
    rng = np.random.default_rng(seed)
    e = rng.normal(scale=noise, size=(c, c))
    return torch.as_tensor(cov + e @ e.T)


def test_kmeans_recovers_planted_clusters_of_a_block_covariance():
    order = np.random.default_rng(3).permutation(NUM_CLASSES)  # groups not contiguous in class ids
    groups = [sorted(order[4 * i:4 * i + 4].tolist()) for i in range(3)]
    cov = block_covariance([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])
    cov = cov[np.argsort(order)][:, np.argsort(order)]  # class order[i] plays the role of i
    sets = make_specialist_sets(cov, num_specialists=3, seed=1)
    assert sorted(s.tolist() for s in sets.sets) == sorted(groups)
    # Fixed-size sets: each centroid's 4 nearest classes are its group again.
    assert sorted(s.tolist() for s in make_specialist_sets(cov, 3, set_size=4, seed=1).sets) == sorted(groups)


def test_kmeans_is_seeded_and_assigns_each_point_to_its_nearest_centroid():
    pts = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    c1, a1, d1 = kmeans(pts, 4, seed=7)
    c2, a2, _ = kmeans(pts, 4, seed=7)
    assert torch.equal(a1, a2) and torch.allclose(c1, c2)
    assert torch.equal(a1, torch.cdist(pts.double(), c1).argmin(1))
    for j in range(4):  # Lloyd's fixed point: each centroid is the mean of its points
        assert torch.allclose(c1[j], pts[a1 == j].double().mean(0), atol=1e-9)


def test_prediction_covariance_equals_numpys_over_the_posteriors():
    model = _model()
    windows = torch.randn(300, 3, FEAT_DIM, generator=torch.Generator().manual_seed(5))
    cov = prediction_covariance(lambda w: model(w).log_softmax(-1), lambda i: windows[i], torch.arange(300),
                                batch_size=64)
    with torch.no_grad():
        probs = torch.softmax(model(windows), -1).double().numpy()
    assert np.allclose(cov.numpy(), np.cov(probs, rowvar=False, bias=True), atol=1e-7)


def test_small_clusters_are_dissolved_into_their_neighbours():
    cov = block_covariance([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10], [11]])
    sets = make_specialist_sets(cov, num_specialists=3, min_size=2, seed=0)
    assert all(len(s) >= 2 for s in sets.sets)
    assert sorted(np.concatenate(sets.sets).tolist()) == list(range(12))  # disjoint and complete


def test_collapse_sums_mass_outside_the_set_into_the_dustbin():
    probs = torch.softmax(torch.randn(5, NUM_CLASSES, generator=torch.Generator().manual_seed(1)), -1)
    classes = np.array([2, 7, 9])
    out = collapse(probs, collapse_map(classes, NUM_CLASSES))
    assert out.shape == (5, 4)
    assert torch.allclose(out[:, :3], probs[:, [2, 7, 9]])
    outside = [c for c in range(NUM_CLASSES) if c not in (2, 7, 9)]
    assert torch.allclose(out[:, 3], probs[:, outside].sum(1))
    assert torch.allclose(out.sum(1), torch.ones(5))


def _model(num_outputs=NUM_CLASSES, seed=0, hidden=16):
    torch.manual_seed(seed)
    cfg = FrameClassifierConfig(num_layers=2, hidden_dim=hidden, left_context=1, right_context=1,
                                feat_dim=FEAT_DIM, num_outputs=num_outputs)
    return FrameClassifier(cfg).eval()


def test_dustbin_init_reproduces_the_generalists_collapsed_distribution():
    gen = _model()
    classes = np.array([1, 4, 5])
    outside = [c for c in range(NUM_CLASSES) if c not in classes]
    with torch.no_grad():  # outside rows differ only in bias: the outside log-mass is linear in h
        gen.output.weight[outside] = gen.output.weight[outside[0]].clone()
        gen.output.bias[outside] = torch.linspace(-1, 1, len(outside))
    windows = torch.randn(500, 3, FEAT_DIM, generator=torch.Generator().manual_seed(2))
    spec, fit = init_specialist(gen, classes, windows)
    assert fit["logit_rmse_lstsq"] < 1e-3 and fit["kl"] < 1e-6
    expected = collapse(torch.softmax(gen(windows), -1), collapse_map(classes, NUM_CLASSES))
    with torch.no_grad():
        got = torch.softmax(spec(windows), -1)
    assert torch.allclose(got, expected, atol=2e-3)
    # The hidden layers are the generalist's.
    assert torch.allclose(hidden_activations(spec, windows), hidden_activations(gen, windows))


def test_dustbin_correction_undoes_the_oversampling():
    # Paper: half the training frames from S. S is 10% of the data: S oversampled 5x, dustbin 0.5/0.9.
    assert dustbin_log_correction(0.5, 0.1) == pytest.approx(math.log(5 / (0.5 / 0.9)))
    assert dustbin_log_correction(0.3, 0.3) == pytest.approx(0.0)


def test_matched_dustbin_correction_hits_the_target_share():
    delta = torch.tensor([-2.0, 0.0, 1.0, 3.0])
    d = matched_dustbin_correction(delta, 0.7)
    assert float(torch.sigmoid(delta + d).mean()) == pytest.approx(0.7, abs=1e-5)
    # Equal deltas: the shift is the logit of the target minus that delta.
    assert matched_dustbin_correction(torch.full((5,), 0.5), 0.8) == pytest.approx(math.log(4) - 0.5, abs=1e-5)


def test_kl_combination_without_active_specialists_returns_the_generalist():
    log_pg = torch.log_softmax(torch.randn(4, NUM_CLASSES), -1)
    active = torch.zeros(4, 1, dtype=torch.bool)
    out = combine_kl(log_pg, [None], active, [torch.tensor([0, 1])])
    assert torch.allclose(out, log_pg, atol=1e-6)


def test_kl_combination_with_an_agreeing_specialist_changes_nothing():
    log_pg = torch.log_softmax(torch.randn(6, NUM_CLASSES, generator=torch.Generator().manual_seed(4)), -1)
    classes = torch.tensor([3, 5, 8])
    p_m = collapse(log_pg.exp(), collapse_map(classes, NUM_CLASSES))
    active = torch.ones(6, 1, dtype=torch.bool)
    out = combine_kl(log_pg, [p_m.log()], active, [classes])
    assert torch.allclose(out, log_pg, atol=1e-5)


def test_kl_combination_moves_mass_inside_the_set_towards_a_confident_specialist():
    # Generalist: classes 0 and 1 tie at 0.4; the specialist of {0, 1, 2} is sure it is class 1.
    p_g = torch.tensor([[0.4, 0.4, 0.1] + [0.1 / 9] * 9])
    classes = torch.tensor([0, 1, 2])
    p_m = torch.tensor([[0.04, 0.85, 0.01, 0.10]])
    out = combine_kl(p_g.log(), [p_m.log()], torch.ones(1, 1, dtype=torch.bool), [classes], steps=400).exp()[0]
    assert out.argmax() == 1
    assert out[1] > 0.4 > out[0]
    # Independent check of the optimum: with one specialist, q_S = (p_g,S + p_m,S) / 2 and the dustbin
    # mass is (p_g,out + p_m,d) / 2 spread like p_g outside (stationarity of the objective).
    assert torch.allclose(out[:3], (p_g[0, :3] + p_m[0, :3]) / 2, atol=2e-3)
    assert out[3:].sum() == pytest.approx(float(p_g[0, 3:].sum() + p_m[0, 3]) / 2, abs=2e-3)


def test_active_specialists_follow_the_generalists_top_classes():
    membership = torch.zeros(2, NUM_CLASSES, dtype=torch.bool)
    membership[0, [0, 1]] = True
    membership[1, [1, 2]] = True
    log_pg = torch.full((3, NUM_CLASSES), -10.0)
    log_pg[0, 0] = 0  # top class 0 -> specialist 0
    log_pg[1, 1] = 0  # top class 1 -> both
    log_pg[2, 5] = 0  # top class 5 -> none
    assert active_specialists(log_pg, membership).tolist() == [[True, False], [True, True], [False, False]]


def test_sets_file_naming_classes_out_of_range_is_an_input_error(tmp_path):
    path = tmp_path / "sets.json"
    path.write_text(json.dumps({"format": "asr_kd.SpecialistSets", "num_classes": 12, "sets": [[0, 1], [3, 12]]}))
    with pytest.raises(InputError, match=r"sets.json: .*set 1 names class 12"):
        SpecialistSets.load(path)
    SpecialistSets(12, [np.array([0, 1])]).save(path)
    with pytest.raises(InputError, match="the generalist has 20"):
        SpecialistSets.load(path, num_classes=20)


def test_specialist_checkpoint_must_fit_its_set_and_generalist(tmp_path):
    spec = _model(num_outputs=4)
    save_specialist(spec, tmp_path / "ok.pt", np.array([0, 3, 7]), NUM_CLASSES)
    _, classes = load_specialist(tmp_path / "ok.pt", NUM_CLASSES)
    assert classes.tolist() == [0, 3, 7]
    with pytest.raises(InputError, match="the generalist has 20"):
        load_specialist(tmp_path / "ok.pt", 20)
    save_specialist(spec, tmp_path / "bad.pt", np.array([0, 3]), NUM_CLASSES)  # 4 outputs, 2 classes
    with pytest.raises(InputError, match="4 outputs for a set of 2 classes"):
        load_specialist(tmp_path / "bad.pt", NUM_CLASSES)
    spec.save(tmp_path / "plain.pt")
    with pytest.raises(InputError, match="not a specialist checkpoint"):
        load_specialist(tmp_path / "plain.pt")


# ---------------------------------------------------------------- a real training run on a small bank
def _bank(root, name, num_utts, seed):
    """Frames from 12 classes in 3 groups: groups far apart, the classes of a group close together."""
    rng = np.random.default_rng(seed)
    means = np.zeros((NUM_CLASSES, FEAT_DIM))
    for g, members in enumerate(GROUPS):
        for i, c in enumerate(members):
            means[c, g] = 6.0
            means[c, 3 + i % 3] = 1.4 * (1 + i // 3)
    feats, labels = [], []
    for _ in range(num_utts):
        lab = np.repeat(rng.integers(0, NUM_CLASSES, size=20), 5)
        feats.append((means[lab] + rng.normal(size=(lab.size, FEAT_DIM))).astype(np.float32))
        labels.append(lab.astype(np.int32))
    return FrameBank.from_arrays(feats, labels, [f"{name}{u}" for u in range(num_utts)], root / name,
                                 num_classes=NUM_CLASSES)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("specialists")
    _bank(root / "bank", "train", 60, 0)
    _bank(root / "bank", "dev", 20, 1)
    # A deliberately under-trained generalist, so that a specialist has something to learn.
    assert train_main(["--exp-dir", str(root / "gen"), "--frame-bank", str(root / "bank"), "--model-shape", "1x32",
                       "--left-context", "1", "--right-context", "1",
                       "--num-epochs", "1", "--batch-size", "128", "--lr", "0.01", "--device", "cpu"]) == 0
    generalist = root / "gen" / "final.pt"
    opts = SpecialistTraining(num_epochs=3, batch_size=64, lr=0.1, temperature=1.0, hard_weight=1.0, fit_frames=2000,
                              progress_bar=False)
    path = train_specialist(generalist, np.array(GROUPS[1]), root / "bank" / "train", root / "bank" / "dev",
                            root / "spec1", opts)
    return {"root": root, "generalist": generalist, "specialist": path, "opts": opts}


def _acc_within_set(model, bank, classes, num_outputs):
    """Accuracy on the frames labelled in `classes` when choosing among `classes` only (no dustbin)."""
    idx = torch.nonzero(torch.isin(bank.labels.long(), torch.as_tensor(classes))).squeeze(1)
    with torch.no_grad():
        logits = model(bank.splice(idx, 1, 1)).float()
    scores = logits[:, torch.as_tensor(classes)] if num_outputs == NUM_CLASSES else logits[:, :len(classes)]
    target = collapse_map(classes, NUM_CLASSES)[bank.labels[idx].long()]
    return float((scores.argmax(1) == target).double().mean())


def test_trained_specialist_beats_the_generalist_on_its_classes(trained):
    root = trained["root"]
    dev = FrameBank.load(root / "bank" / "dev")
    gen = FrameClassifier.load(trained["generalist"])
    spec, classes = load_specialist(trained["specialist"], NUM_CLASSES)
    assert classes.tolist() == GROUPS[1]
    ckpt = read_checkpoint(trained["specialist"])["specialist"]
    # By construction the bank's labels are uniform over 12 classes: S (4 of them) is ~1/3 of the frames.
    natural = float(np.isin(FrameBank.load(root / "bank" / "train").labels.numpy(), GROUPS[1]).mean())
    assert ckpt["natural_fraction"] == pytest.approx(natural)
    assert ckpt["paper_dustbin_log_correction"] == pytest.approx(math.log((1 - natural) / natural))
    # "match": over the natural training frames the dustbin's mean probability is the share outside S.
    train = FrameBank.load(root / "bank" / "train")
    with torch.no_grad():
        dust = torch.softmax(spec(train.splice(torch.arange(train.num_frames), 1, 1)), -1)[:, -1]
    assert float(dust.mean()) == pytest.approx(1 - natural, abs=0.02)
    # The view bank the trainer used maps S onto 0..3 and the rest onto the dustbin 4.
    view = FrameBank.load(root / "spec1" / "bank" / "dev")
    assert view.num_classes == 5
    assert torch.equal(view.labels.long(), collapse_map(classes, NUM_CLASSES)[dev.labels.long()])
    init = FrameClassifier.load(root / "spec1" / "init.pt")
    # The initial specialist ranks S exactly as the generalist does (its rows of S are copies).
    before = _acc_within_set(init, dev, classes, 5)
    assert before == _acc_within_set(gen, dev, classes, NUM_CLASSES)
    after = _acc_within_set(spec, dev, classes, 5)
    assert after > before + 0.05


def test_combination_with_trained_specialists_keeps_shapes_and_normalisation(trained):
    root = trained["root"]
    dev = FrameBank.load(root / "bank" / "dev")
    comb = SpecialistCombiner(FrameClassifier.load(trained["generalist"]), [str(trained["specialist"])], steps=30)
    out = comb.run(dev.splice(torch.arange(300), 1, 1))
    assert out.log_q.shape == (300, NUM_CLASSES)
    assert torch.allclose(out.log_q.exp().sum(1), torch.ones(300), atol=1e-5)
    top_in_s = torch.isin(out.log_pg.argmax(1), torch.tensor(GROUPS[1]))
    assert torch.equal(out.active[:, 0], top_in_s)
    # Frames without an active specialist keep the generalist's distribution.
    assert torch.allclose(out.log_q[~top_in_s], out.log_pg[~top_in_s], atol=1e-5)


def test_retraining_into_a_directory_of_another_set_is_refused(trained):
    root = trained["root"]
    with pytest.raises(InputError, match="trained for another class set"):
        train_specialist(trained["generalist"], np.array(GROUPS[0]), root / "bank" / "train",
                         root / "bank" / "dev", root / "spec1", trained["opts"])


def test_clis_score_generalist_plus_specialists_alike(trained, tmp_path):
    from asr_kd.bin.frame_accuracy import main as frame_accuracy_main
    from asr_kd.bin.specialist_accuracy import main as accuracy_main

    root = trained["root"]
    dev = root / "bank" / "dev"
    args = ["--generalist", str(trained["generalist"]), "--specialists", str(trained["specialist"]),
            "--frame-bank", str(dev), "--output", str(tmp_path / "acc.json"), "--table", str(tmp_path / "t.md")]
    assert accuracy_main(args) == 0
    rec = json.loads((tmp_path / "acc.json").read_text())
    rows = {r["covering"]: r for r in rec["breakdown"]}
    assert rows["all"]["frames"] == 2000 == sum(r["frames"] for k, r in rows.items() if k != "all")
    assert set(rows) == {"0", "1", "all"}  # one specialist: it covers the label or not
    assert "| dev | 1 |" in (tmp_path / "t.md").read_text()
    # frame-accuracy with --specialists scores the same combined posteriors.
    assert frame_accuracy_main(["--model", str(trained["generalist"]), "--specialists", str(trained["specialist"]),
                        "--frame-bank", str(dev), "--output", str(tmp_path / "dn.json"), "--device", "cpu", "--amp", "none"]) == 0
    assert json.loads((tmp_path / "dn.json").read_text())["accuracy"] == pytest.approx(rec["accuracy_with"], abs=1e-9)
    assert frame_accuracy_main(["--model", str(trained["generalist"]), "--frame-bank", str(dev),
                                "--output", str(tmp_path / "g.json"), "--device", "cpu", "--amp", "none"]) == 0
    assert json.loads((tmp_path / "g.json").read_text())["accuracy"] == pytest.approx(rec["accuracy_without"], abs=1e-9)
    # A sets file naming a class the generalist lacks is refused with exit code 2.
    (tmp_path / "sets.json").write_text(json.dumps({"format": "asr_kd.SpecialistSets", "num_classes": 12,
                                                    "sets": [[0, 99]]}))
    from asr_kd.bin.train_specialists import main as train_specialists_main

    assert train_specialists_main(["--sets", str(tmp_path / "sets.json"), "--generalist", str(trained["generalist"]),
                                   "--frame-bank", str(root / "bank"), "--exp-dir", str(tmp_path / "x")]) == 2
