"""Ensemble teacher: averaged posteriors, batched (stacked-weight) paths against the plain loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asr_kd.data.frame_bank import FrameBank
from asr_kd.distill.ensemble import EnsembleTeacher, average_posteriors, ensemble_frame_accuracy, file_sha256
from asr_kd.models import FrameClassifier, FrameClassifierConfig
from asr_kd.utils.errors import InputError

CONFIG = FrameClassifierConfig(num_layers=2, hidden_dim=24, left_context=3, right_context=1,
                               feat_dim=6, num_outputs=11)


def _members(n: int, config: FrameClassifierConfig = CONFIG, seed: int = 0) -> list[FrameClassifier]:
    models = []
    for m in range(n):
        torch.manual_seed(seed + m)
        model = FrameClassifier(config)
        # Non-trivial norm statistics, so a path that ignored the members' buffers would show.
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.5)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
        models.append(model.eval())
    return models


def _probs_by_hand(logits: torch.Tensor, t: float) -> torch.Tensor:
    e = torch.exp(logits.double() / t - (logits.double() / t).max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def test_arithmetic_mean_is_mean_of_member_softmaxes():
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(5, 7, generator=g) * 3 for _ in range(4)]
    expected = sum(_probs_by_hand(z, 2.0) for z in logits) / 4
    got = average_posteriors(logits, temperature=2.0, mean="arithmetic")
    assert torch.allclose(got.double(), expected, atol=1e-6)
    assert torch.allclose(average_posteriors(torch.stack(logits), 2.0), got)


def test_geometric_mean_is_renormalised_product_of_member_distributions():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 7, generator=g) * 3
    probs = [_probs_by_hand(z, 2.0) for z in logits]
    product = torch.ones_like(probs[0])
    for p in probs:
        product = product * p ** (1 / 3)
    expected = product / product.sum(-1, keepdim=True)
    got = average_posteriors(logits, temperature=2.0, mean="geometric")
    assert torch.allclose(got.double(), expected, atol=1e-6)
    # Geometric and arithmetic means differ for disagreeing members (AM-GM), so the test can tell them apart.
    assert not torch.allclose(got, average_posteriors(logits, 2.0, "arithmetic"), atol=1e-3)


def test_one_member_ensemble_is_the_member():
    z = torch.randn(4, 6)
    for mean in ("arithmetic", "geometric"):
        assert torch.allclose(average_posteriors([z], 1.5, mean).double(), _probs_by_hand(z, 1.5), atol=1e-6)


@pytest.mark.parametrize("norm,layers,lifter,auto_path", [("none", 2, 0, "mlp"), ("none", 0, 0, "mlp"),
                                                          ("layernorm", 2, 0, "vmap"), ("batchnorm", 2, 0, "vmap"),
                                                          ("none", 2, 3, "vmap")])
def test_batched_paths_equal_each_member_run_alone(norm, layers, lifter, auto_path):
    config = FrameClassifierConfig(num_layers=layers, hidden_dim=24, left_context=3, right_context=1, feat_dim=6,
                                   num_outputs=11, norm=norm, input_norm=norm, dropout=0.1, input_lifter=lifter)
    members = _members(4, config)
    x = torch.randn(9, config.context, config.feat_dim)
    with torch.no_grad():
        own = torch.stack([m(x) for m in members])  # each member alone, before any stacking
    assert EnsembleTeacher(members).path == auto_path
    paths = ["mlp", "vmap", "loop"] if auto_path == "mlp" else ["vmap", "loop"]
    teachers = {p: EnsembleTeacher(members, mean="geometric", path=p) for p in paths}
    for p, teacher in teachers.items():
        assert torch.allclose(teacher.member_logits(x), own, atol=1e-5), p
        # Flattened windows and the bank's fp16 windows go through every path too.
        assert torch.allclose(teacher.member_logits(x.reshape(9, -1)), own, atol=1e-5), p
        assert torch.allclose(teacher.member_logits(x.half()), torch.stack([m(x.half()) for m in members]), atol=1e-5), p
        assert torch.allclose(teacher.soft_targets(x, 2.0), average_posteriors(own, 2.0, "geometric"), atol=1e-6), p
    if auto_path != "mlp":
        with pytest.raises(InputError, match="mlp"):
            EnsembleTeacher(members, path="mlp")


def test_mlp_path_under_bf16_autocast_matches_the_loop():
    members = _members(3)
    x = torch.randn(16, CONFIG.context, CONFIG.feat_dim).half()
    outs = {}
    for p in ("mlp", "loop"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outs[p] = EnsembleTeacher(members, path=p).member_logits(x).float()
    # Same bf16 GEMMs in a different grouping: equal up to bf16 rounding of the logits.
    assert torch.allclose(outs["mlp"], outs["loop"], atol=0.05, rtol=0.02)


@pytest.mark.parametrize("path", ["mlp", "vmap"])
def test_batched_weights_are_shared_with_the_members(path):
    members = _members(3)
    teacher = EnsembleTeacher(members, path=path)
    x = torch.randn(2, CONFIG.context, CONFIG.feat_dim)
    teacher.member_logits(x)
    with torch.no_grad():
        members[1].output.bias.add_(5.0)  # a change seen through a member reaches the batched path
    assert torch.allclose(teacher.member_logits(x)[1], members[1](x), atol=1e-5)


@pytest.mark.parametrize("path", ["mlp", "vmap"])
def test_moving_the_teacher_rebuilds_the_stacked_weights(path):
    members = _members(3)
    teacher = EnsembleTeacher(members, path=path)
    x = torch.randn(5, CONFIG.context, CONFIG.feat_dim, dtype=torch.float64)
    teacher.member_logits(x.float())
    teacher.to(torch.float64)
    out = teacher.member_logits(x)
    assert out.dtype == torch.float64
    assert torch.allclose(out, torch.stack([m(x) for m in teacher.members]), atol=1e-12)


def test_members_of_different_shapes_fall_back_to_the_loop():
    other = FrameClassifierConfig(num_layers=1, hidden_dim=8, left_context=3, right_context=1, feat_dim=6, num_outputs=11)
    members = _members(2) + _members(1, other)
    teacher = EnsembleTeacher(members)
    assert teacher.path == "loop"
    x = torch.randn(3, CONFIG.context, CONFIG.feat_dim)
    assert teacher.soft_targets(x, 1.0).shape == (3, 11)
    for path in ("mlp", "vmap"):
        with pytest.raises(InputError, match="identical"):
            EnsembleTeacher(members, path=path)


def test_load_records_checkpoints_and_gives_the_saved_models(tmp_path):
    members = _members(2)
    paths = []
    for i, m in enumerate(members):
        paths.append(tmp_path / f"member{i}.pt")
        m.save(paths[-1])
    teacher = EnsembleTeacher.load(paths, "cpu", mean="arithmetic")
    assert [c["sha256"] for c in teacher.checkpoints] == [file_sha256(p) for p in paths]
    assert teacher.context == (3, 1)
    x = torch.randn(4, CONFIG.context, CONFIG.feat_dim)
    expected = sum(_probs_by_hand(m(x).detach(), 2.0) for m in members) / 2
    assert torch.allclose(teacher.soft_targets(x, 2.0).double(), expected, atol=1e-6)
    with pytest.raises(InputError, match="missing.pt"):
        EnsembleTeacher.load([tmp_path / "missing.pt"])


def test_ensemble_frame_accuracy_matches_per_utterance_decoding(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [7, 12, 5]
    feats = [rng.normal(size=(n, CONFIG.feat_dim)).astype(np.float32) for n in lengths]
    labels = [rng.integers(0, CONFIG.num_outputs, size=n) for n in lengths]
    bank = FrameBank.from_arrays(feats, labels, ["a", "b", "c"], tmp_path / "bank", num_classes=CONFIG.num_outputs)
    members = _members(3)
    teacher = EnsembleTeacher(members)
    acc = ensemble_frame_accuracy(teacher, bank, batch_size=5)

    # Independent route: each utterance through FrameClassifier.posteriors (its own splicing).
    correct = np.zeros(len(members) + 2)
    for f, y in zip(feats, labels):
        f16 = torch.from_numpy(f.astype(np.float16).astype(np.float32))  # the bank stores fp16
        post = [m.posteriors(f16) for m in members]
        for i, p in enumerate(post):
            correct[i] += (p.argmax(-1).numpy() == y).sum()
        arith = sum(post) / len(post)
        geo = torch.softmax(sum(p.log() for p in post) / len(post), -1)
        correct[-2] += (arith.argmax(-1).numpy() == y).sum()
        correct[-1] += (geo.argmax(-1).numpy() == y).sum()
    expected = correct / sum(lengths)
    got = [acc[f"member{i + 1}"] for i in range(len(members))] + [acc["arithmetic"], acc["geometric"]]
    assert np.allclose(got, expected)
    assert acc["num_frames"] == sum(lengths)


def test_average_posteriors_leaves_the_callers_logits_alone_unless_told():
    logits = torch.randn(2, 3, 4)
    before = logits.clone()
    average_posteriors(logits, temperature=2.0)
    assert torch.equal(logits, before)
    average_posteriors(logits, temperature=2.0, overwrite_input=True)
    assert torch.allclose(logits, before / 2)


def test_frame_accuracy_cli_per_member_writes_what_the_library_computes(tmp_path, capsys):
    from asr_kd.bin import frame_accuracy

    rng = np.random.default_rng(3)
    feats = [rng.normal(size=(n, CONFIG.feat_dim)).astype(np.float32) for n in (6, 8)]
    labels = [rng.integers(0, CONFIG.num_outputs, size=len(f)) for f in feats]
    bank = FrameBank.from_arrays(feats, labels, ["a", "b"], tmp_path / "bank", num_classes=CONFIG.num_outputs)
    paths = []
    for i, m in enumerate(_members(2)):
        paths.append(tmp_path / f"m{i}.pt")
        m.save(paths[-1])
    out = tmp_path / "acc.json"
    argv = ["--model", *map(str, paths), "--frame-bank", str(tmp_path / "bank"), "--output", str(out),
            "--per-member", "--device", "cpu", "--amp", "none"]
    assert frame_accuracy.main(argv) == 0
    written = json.loads(out.read_text())
    expected = ensemble_frame_accuracy(EnsembleTeacher(_members(2)), bank)
    assert written["members"] == pytest.approx([expected["member1"], expected["member2"]])
    assert written["accuracy"] == pytest.approx(expected["arithmetic"])
    assert written["geometric_mean_accuracy"] == pytest.approx(expected["geometric"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == written
    assert frame_accuracy.main(["--model", str(paths[0]), "--frame-bank", str(tmp_path / "none"),
                                "--device", "cpu"]) == 2


def test_frame_accuracy_teacher_kl_and_agreement_match_each_utterance_scored_by_hand(tmp_path):
    from asr_kd.bin import frame_accuracy

    rng = np.random.default_rng(4)
    feats = [rng.normal(size=(n, CONFIG.feat_dim)).astype(np.float32) for n in (9, 6, 11)]
    labels = [rng.integers(0, CONFIG.num_outputs, size=len(f)) for f in feats]
    FrameBank.from_arrays(feats, labels, ["a", "b", "c"], tmp_path / "bank", num_classes=CONFIG.num_outputs)
    members = _members(3, seed=7)
    paths = []
    for i, m in enumerate(members):
        paths.append(tmp_path / f"m{i}.pt")
        m.save(paths[-1])
    t = 2.0

    def scored(model: str, teacher: list[str]) -> dict:
        out = tmp_path / f"{model}-{len(teacher)}.json"
        assert frame_accuracy.main(["--model", model, "--frame-bank", str(tmp_path / "bank"), "--output", str(out),
                                    "--teacher", *teacher, "--temperature", str(t), "--batch-size", "4",
                                    "--device", "cpu", "--amp", "none"]) == 0
        return json.loads(out.read_text())["teacher"]

    # Itself as teacher: nothing to learn, and the entropy of its own tempered distribution.
    alone = scored(str(paths[0]), [str(paths[0])])
    assert alone["kl"] == pytest.approx(0.0, abs=1e-6) and alone["agreement"] == 1.0
    # The other two members as teacher, against each utterance through FrameClassifier.posteriors.
    near = scored(str(paths[0]), [str(paths[1]), str(paths[2])])
    kl = agree = entropy = entropy_self = 0.0
    for f in feats:
        f16 = torch.from_numpy(f.astype(np.float16).astype(np.float32))  # the bank stores fp16
        q = members[0].posteriors(f16, temperature=t).double()
        p = (members[1].posteriors(f16, temperature=t) + members[2].posteriors(f16, temperature=t)).double() / 2
        kl += float((p * (p.log() - q.log())).sum())
        agree += float((p.argmax(-1) == q.argmax(-1)).sum())
        entropy += float(-(p * p.log()).sum())
        entropy_self += float(-(q * q.log()).sum())
    n = sum(len(f) for f in feats)
    assert near["num_frames"] == alone["num_frames"] == n
    assert near["kl"] == pytest.approx(kl / n, rel=1e-4) and near["kl"] > 0.01
    assert near["agreement"] == pytest.approx(agree / n) and near["agreement"] < 1
    assert near["teacher_entropy"] == pytest.approx(entropy / n, rel=1e-4)
    assert alone["teacher_entropy"] == pytest.approx(entropy_self / n, rel=1e-4)
    assert frame_accuracy.main(["--model", str(paths[0]), "--cuts", str(tmp_path / "c.jsonl.gz"),
                                "--teacher", str(paths[1])]) == 2
