"""GMM-HMM training, tree building and forced alignment on a small real espeak-ng corpus."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np
import pytest

from asr_kd.gmm.features import add_deltas, dct_matrix, lifter_coeffs, mfcc_from_fbank
from asr_kd.gmm.tree import TreeStats, build_tree, gauss_objf

VOCAB = "ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE ZERO YES NO RED GREEN BLUE CAT DOG HOUSE WATER LIGHT".split()
VOICES = [("en-us", 150, 40), ("en-us", 175, 60), ("en", 160, 50), ("en-us+m3", 140, 45)]
NUM_UTTS = 48
BAD_CUT = "spk0-bad"  # audio of two words, transcript of 40: cannot be aligned
TRI1_LEAVES = 110


def _speak(text: str, voice: tuple[str, int, int], wav: Path) -> None:
    name, rate, pitch = voice
    raw = subprocess.run(["espeak-ng", "-v", name, "-s", str(rate), "-p", str(pitch), "--stdout", text.lower()],
                         check=True, capture_output=True).stdout
    # -R: sox's dither with the same random numbers each run, so every session synthesizes the same audio (without
    # it each run dithered anew; without dither at all, espeak-ng's digital silence misaligns in tri2)
    subprocess.run(["sox", "-R", "-t", "wav", "-", "-r", "16000", str(wav)], input=raw, check=True)


def build_small_gmm_exp(base: Path) -> Path:
    """Synthesize a digit/colour corpus, fbank cuts, a lang dir, then train mono + tri1 and align.

    Built once per session for every module that uses it (the `small_gmm_exp` fixture of tests/conftest.py).
    """
    from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, MonoCut, Recording, SupervisionSegment

    from asr_kd.bin import align, train_gmm
    from asr_kd.lang import prepare_lang

    exp = base / "exp"
    cuts_path = exp / "data" / "fbank" / "cuts_train-clean-100.jsonl.gz"
    rng = random.Random(0)
    wav_dir = base / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    cuts = []
    items = [(f"spk{i % 4}-utt{i:03d}", [rng.choice(VOCAB) for _ in range(rng.randint(2, 6))], i % 4, None)
             for i in range(NUM_UTTS)]
    items.append((BAD_CUT, ["RED", "CAT"], 0, [rng.choice(VOCAB) for _ in range(40)]))
    for uid, spoken, spk, written in items:
        wav = wav_dir / f"{uid}.wav"
        _speak(" ".join(spoken), VOICES[spk], wav)
        rec = Recording.from_file(wav, recording_id=uid)
        sup = SupervisionSegment(id=uid, recording_id=uid, start=0, duration=rec.duration,
                                 text=" ".join(written or spoken), speaker=f"spk{spk}")
        cuts.append(MonoCut(id=uid, start=0, duration=rec.duration, channel=0, recording=rec, supervisions=[sup]))
    cut_set = CutSet.from_cuts(cuts).compute_and_store_features(
        Fbank(FbankConfig(num_mel_bins=40)), storage_path=str(base / "fbank"), storage_type=LilcomChunkyWriter)
    cuts_path.parent.mkdir(parents=True, exist_ok=True)
    cut_set.to_file(cuts_path)
    prepare_lang(exp / "lang", VOCAB)
    assert train_gmm.main(["--exp-dir", str(exp), "--lang-dir", str(exp / "lang"), "--systems", "mono", "tri1", "tri2",
                           "--mono-iters", "12", "--mono-gauss", "250", "--tri1-iters", "8",
                           "--tri1-leaves", str(TRI1_LEAVES), "--tri1-gauss", "500", "--tri2-iters", "6",
                           "--tri2-leaves", str(TRI1_LEAVES), "--tri2-gauss", "500"]) == 0
    for system in ("tri1", "tri2"):
        assert align.main(["--exp-dir", str(exp), "--lang-dir", str(exp / "lang"), "--system", system,
                           "--parts", "train-clean-100"]) == 0
    return exp


def test_full_dct_is_orthonormal_so_mfcc_inverts_to_the_fbank():
    fbank = np.random.default_rng(0).normal(size=(7, 40)).astype(np.float32)
    mat = dct_matrix(40, 40)
    np.testing.assert_allclose(mat.T @ mat, np.eye(40), atol=1e-5)
    ceps = mfcc_from_fbank(fbank, num_ceps=40, cepstral_lifter=22.0) / lifter_coeffs(40, 22.0)
    np.testing.assert_allclose(ceps @ mat.T, fbank, atol=1e-4)
    # Kaldi's lifter: 1 at c0, 1 + Q/2 where sin(pi i / Q) = 1 (i = Q/2 = 11).
    assert lifter_coeffs(13)[0] == pytest.approx(1.0)
    assert lifter_coeffs(13)[11] == pytest.approx(12.0)


def test_deltas_of_a_ramp_are_its_slope_and_zero_curvature():
    t = np.arange(30, dtype=np.float32)[:, None]
    out = add_deltas(np.hstack([2 * t, -t]))
    assert out.shape == (30, 6)
    np.testing.assert_allclose(out[4:-4, 2:4], [[2.0, -1.0]] * 22, atol=1e-5)
    np.testing.assert_allclose(out[4:-4, 4:6], 0.0, atol=1e-5)


def test_gauss_objf_equals_kaldi_gauss_clusterable():
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(50, 5))
    ours = gauss_objf(np.float64(50), x.sum(0), (x * x).sum(0), var_floor=0.01)
    kaldi = khg.GaussClusterable(x.sum(0), (x * x).sum(0), 0.01, 50.0).objf()
    assert ours == pytest.approx(kaldi, rel=1e-6)


def _context_stats(rng: np.random.Generator) -> TreeStats:
    """Phones 1-4 with 1 pdf-class; phone 3's mean depends only on whether its left phone is in {1, 2}."""
    rows, counts, sums, sumsqs = [], [], [], []
    for left in range(0, 5):
        for center in range(1, 5):
            for right in range(0, 5):
                shift = 4.0 if (center == 3 and left in (1, 2)) else 0.0
                x = rng.normal(center + shift, 1.0, size=(200, 3))
                rows.append((left, center, right, 0))
                counts.append(200.0)
                sums.append(x.sum(0))
                sumsqs.append((x * x).sum(0))
    return TreeStats(np.array(rows, dtype=np.int32), np.array(counts), np.array(sums), np.array(sumsqs))


def test_tree_splits_on_the_informative_context_and_kaldi_reads_it():
    stats = _context_stats(np.random.default_rng(2))
    questions = [frozenset(q) for q in ({1, 2}, {3, 4}, {0}, {1}, {3})]
    tree = build_tree(stats, {p: 1 for p in range(1, 5)}, questions, num_leaves=5, min_count=100)
    ctx = tree.to_context_dependency()
    assert tree.num_leaves == 5 and ctx.num_pdfs == 5
    assert (ctx.context_width, ctx.central_position) == (3, 1)
    pdf = {(l, c, r): ctx.compute([l, c, r], 0)[1] for l in range(5) for c in range(1, 5) for r in range(5)}
    # phone 3 is split by "left in {1, 2}", and only that: right context and other phones do not matter
    assert pdf[(1, 3, 0)] == pdf[(2, 3, 4)] != pdf[(0, 3, 0)] == pdf[(4, 3, 1)]
    assert len({pdf[(l, 1, r)] for l in range(5) for r in range(5)}) == 1
    assert len(set(pdf.values())) == 5


def test_tree_never_exceeds_num_leaves_and_shared_roots_share_pdfs():
    stats = _context_stats(np.random.default_rng(3))
    questions = [frozenset(q) for q in ({1, 2}, {3, 4}, {0}, {1}, {3})]
    tree = build_tree(stats, {p: 1 for p in range(1, 5)}, questions, num_leaves=3, root_sets=[[1, 2], [3], [4]])
    ctx = tree.to_context_dependency()
    assert tree.num_leaves == 3 == ctx.num_pdfs
    assert ctx.compute([0, 1, 0], 0)[1] == ctx.compute([0, 2, 0], 0)[1]


def test_trained_tree_respects_num_leaves(small_gmm_exp):
    info = json.loads((small_gmm_exp / "gmm" / "tri1" / "info.json").read_text())
    mono = json.loads((small_gmm_exp / "gmm" / "mono" / "info.json").read_text())
    # more pdfs than the monophone system (the tree did split), never more than asked for
    assert mono["num_pdfs"] < info["num_pdfs"] <= TRI1_LEAVES


@pytest.mark.parametrize("system", ["tri1", "tri2"])
def test_alignments_cover_every_frame_and_exclude_the_unalignable_cut(small_gmm_exp, system):
    from asr_kd.gmm.ali_io import load_alignment_cuts, read_ali_info

    ali_dir = small_gmm_exp / "gmm" / system / "ali"
    info = read_ali_info(ali_dir)
    assert info["failed"] == [BAD_CUT]
    assert info["system"] == system
    cuts = load_alignment_cuts(ali_dir, "train-clean-100")
    assert len(cuts) == NUM_UTTS and BAD_CUT not in {c.id for c in cuts}
    for cut in cuts:
        pdf_ids = cut.load_custom("pdf_ids")
        assert pdf_ids.dtype == np.int32 and pdf_ids.shape == (cut.num_frames,)
        assert 0 <= pdf_ids.min() and pdf_ids.max() < info["num_pdfs"]
    mono_info = json.loads((small_gmm_exp / "gmm" / "mono" / "info.json").read_text())
    assert mono_info["failed"] == [BAD_CUT] and mono_info["num_aligned"] == NUM_UTTS


def _spells(phones: list[str], words: list[str], prons: dict[str, list[list[str]]]) -> bool:
    """Whether `phones` is the concatenation of one pronunciation of each word in order."""
    if not words:
        return not phones
    return any(phones[:len(p)] == p and _spells(phones[len(p):], words[1:], prons) for p in prons[words[0]])


def test_alignment_follows_the_transcripts_pronunciations_and_ends_in_silence(small_gmm_exp):
    from lhotse import load_manifest

    from asr_kd.gmm.boundaries import aligned_phones
    from asr_kd.gmm.stages import load_alignments
    from asr_kd.gmm.system import GmmSystem, TransitionArrays
    from asr_kd.lang import Lang

    lang = Lang.load(small_gmm_exp / "lang")
    system = GmmSystem.load(small_gmm_exp / "gmm" / "tri1")
    arrays = TransitionArrays.from_model(system.transition_model)
    alis = load_alignments(small_gmm_exp / "gmm" / "tri1" / "ali_train.npz")
    prons: dict[str, list[list[str]]] = {}
    for line in (small_gmm_exp / "lang" / "lexicon.txt").read_text().splitlines():
        word, *pron = line.split()
        prons.setdefault(word, []).append(pron)
    texts = {c.id: c.supervisions[0].text.split() for c in load_manifest(
        small_gmm_exp / "data" / "fbank" / "cuts_train-clean-100.jsonl.gz")}
    assert len(alis) == NUM_UTTS
    for utt, tids in alis.items():
        phones = [p.phone for p in aligned_phones(tids, arrays, lang.id2phone)]
        assert _spells([p for p in phones if p != "SIL"], texts[utt], prons), (utt, phones)
        assert phones[-1] == "SIL", utt  # espeak-ng ends every utterance with a pause


def test_boundary_errors_count_only_matching_speech_phones():
    from asr_kd.gmm.boundaries import TimedPhone, boundary_errors

    ref = [TimedPhone(p, t) for p, t in [("SIL", 0.0), ("HH", 0.10), ("AH", 0.15), ("L", 0.22), ("OW", 0.30),
                                          ("SIL", 0.5)]]
    hyp = [TimedPhone(p, t) for p, t in [("HH", 0.11), ("AH", 0.19), ("L", 0.22), ("UW", 0.31), ("SIL", 0.4)]]
    # OW/UW is a substitution (no boundary compared); silences are ignored
    assert boundary_errors(ref, hyp) == pytest.approx([0.01, 0.04, 0.0])


def test_boundary_accuracy_per_engine(small_gmm_exp, tmp_path):
    from asr_kd.gmm.boundaries import (TimedPhone, aligned_phones, boundary_accuracy, engines_of_utterances,
                                       read_speaker_engines)
    from asr_kd.gmm.stages import load_alignments
    from asr_kd.gmm.system import GmmSystem, TransitionArrays
    from asr_kd.lang import Lang

    speakers = tmp_path / "SPEAKERS.TXT"
    speakers.write_text(";ID |SEX| SUBSET |MINUTES| NAME\n"
                        "spk0 | F | train-clean-100 | 1.00 | espeak-ng en-us rate 1.00\n"
                        "spk1 | M | train-clean-100 | 1.00 | flite kal16 rate 1.10 pitch 0.90\n")
    engines = read_speaker_engines(speakers)
    assert engines == {"spk0": "espeak-ng", "spk1": "flite"}
    lang = Lang.load(small_gmm_exp / "lang")
    system = GmmSystem.load(small_gmm_exp / "gmm" / "tri1")
    arrays = TransitionArrays.from_model(system.transition_model)
    alis = {u: a for u, a in load_alignments(small_gmm_exp / "gmm" / "tri1" / "ali_train.npz").items()
            if u.split("-")[0] in engines}
    # references = our own phone starts, moved 10 ms (espeak-ng speakers) or 50 ms (flite speakers)
    shift = {"espeak-ng": 0.01, "flite": 0.05}
    utt_engine = engines_of_utterances(alis, engines)
    refs = {u: [TimedPhone(p.phone, p.start + shift[utt_engine[u]]) for p in aligned_phones(a, arrays, lang.id2phone)]
            for u, a in alis.items()}
    acc = boundary_accuracy(alis, arrays, lang.id2phone, refs, utt_engine, tolerance=0.02)
    assert acc["espeak-ng"]["within"] == 1.0 and acc["flite"]["within"] == 0.0
    assert acc["all"]["boundaries"] == acc["espeak-ng"]["boundaries"] + acc["flite"]["boundaries"] > 0
    assert acc["all"]["utterances"] == len(alis)


def test_oov_words_map_to_unk_and_are_counted(small_gmm_exp, caplog):
    from asr_kd.gmm.lang_files import load_gmm_lang

    lang = load_gmm_lang(small_gmm_exp / "lang")
    ids = lang.word_ids("RED ZEBRA CAT ZEBRA QUUX")
    unk = lang.words["<UNK>"]
    assert ids == [lang.words["RED"], unk, lang.words["CAT"], unk, unk]
    with caplog.at_level("WARNING"):
        lang.report_oovs("test text")
    assert "3 OOV tokens (2 types)" in caplog.text


def test_cli_reports_a_missing_lang_dir_in_one_line(tmp_path, capsys):
    from asr_kd.bin import train_gmm

    assert train_gmm.main(["--exp-dir", str(tmp_path), "--lang-dir", str(tmp_path / "nolang")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nolang" in err[0]


def test_lda_finds_the_discriminating_direction():
    from asr_kd.gmm.lda_mllt import estimate_lda

    rng = np.random.default_rng(4)
    direction = np.array([0.6, 0.8, 0.0])
    classes = rng.integers(0, 2, size=4000)
    x = rng.normal(size=(4000, 3)) + 3.0 * classes[:, None] * direction
    lda = estimate_lda(x, classes, dim=1)
    row = lda[0] / np.linalg.norm(lda[0])
    # within-class covariance is the identity, so the best direction is the class-mean difference
    assert abs(row @ direction) == pytest.approx(1.0, abs=0.01)


def test_mllt_rotates_correlated_gaussians_towards_diagonal_covariance():
    from asr_kd.gmm.lda_mllt import estimate_mllt, mllt_objf

    rng = np.random.default_rng(5)
    rot = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    sigma = rot @ np.diag([4.0, 1.0, 0.25, 0.1]) @ rot.T  # shared full covariance, far from diagonal
    occ = 1000.0
    # one Gaussian modelled with the diagonal of sigma: G_i = occ * sigma / sigma_ii
    g = np.stack([occ * sigma / sigma[i, i] for i in range(4)])
    a = estimate_mllt(g, occ, num_iters=30)
    assert mllt_objf(a, g, occ) > mllt_objf(np.eye(4), g, occ) + 1.0
    transformed = a @ sigma @ a.T
    off = transformed - np.diag(np.diag(transformed))
    # the semi-tied transform (nearly) diagonalises the shared covariance
    assert np.abs(off).max() < 0.05 * np.abs(np.diag(transformed)).min()


def test_mixing_up_allocates_gaussians_as_kaldi_and_splits_along_a_seeded_direction():
    from asr_kd.gmm.estimate import init_flat_am, mix_up, split_targets
    from asr_kd.lang.topo import load_topo, make_topo

    topo = load_topo(make_topo(list(range(2, 40)), [1]))
    tree = khg.monophone_context_dependency(topo.phones, topo.get_phone_to_num_pdf_classes())
    tm = khg.TransitionModel(tree, topo)
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(600, 4)).astype(np.float32)
    occupancy = rng.gamma(0.7, 3000, tm.num_pdfs).astype(np.float32)
    occupancy[:3] = [0.0, 15.0, 45.0]  # no frames; too few for a second Gaussian; room for one more
    # The bindings' own split allocates Gaussians to pdfs the same way (its directions are unseeded).
    kaldi = init_flat_am(tm.num_pdfs, frames)
    kaldi.split_by_count(occupancy, 700, 0.01, 0.2, 20.0)
    targets = split_targets(occupancy, 700, power=0.2, min_count=20.0)
    assert targets.tolist() == [kaldi.num_gauss_in_pdf(p) for p in range(tm.num_pdfs)]
    assert targets[:3].tolist() == [1, 1, 2] and targets.sum() == 700

    def mixed(seed: int) -> khg.AmDiagGmm:
        am = init_flat_am(tm.num_pdfs, frames)
        mix_up(am, occupancy, 700, np.random.default_rng(seed), perturb_factor=0.5)
        return am

    a, b, c = mixed(1), mixed(1), mixed(2)
    means = [np.concatenate([am.get_pdf(p).means_invvars / am.get_pdf(p).inv_vars for p in range(3, 6)])
             for am in (a, b, c)]
    assert np.array_equal(means[0], means[1]) and not np.allclose(means[0], means[2])
    gmm = a.get_pdf(2)  # one split: two halves of the weight, means either side of the global mean
    assert np.allclose(gmm.weights, [0.5, 0.5])
    assert np.allclose((gmm.means_invvars / gmm.inv_vars).mean(axis=0), frames.mean(axis=0), atol=1e-5)


def test_gmm_training_is_reproducible(small_gmm_exp, tmp_path):
    from asr_kd.bin import train_gmm

    models = []
    for run in ("a", "b"):
        exp = tmp_path / run
        (exp / "data").mkdir(parents=True)
        (exp / "data" / "fbank").symlink_to(small_gmm_exp / "data" / "fbank")
        assert train_gmm.main(["--exp-dir", str(exp), "--lang-dir", str(small_gmm_exp / "lang"), "--systems", "mono",
                               "--mono-iters", "6", "--mono-gauss", "250"]) == 0
        models.append((exp / "gmm" / "mono" / "final.mdl").read_bytes())
    assert models[0] == models[1]


def test_optional_parts_are_aligned_when_they_can_be_and_added_to_the_aligned_ones(small_gmm_exp, tmp_path):
    import shutil

    from lhotse import CutSet, load_manifest

    from asr_kd.bin import align

    exp = tmp_path / "exp"
    shutil.copytree(small_gmm_exp / "gmm" / "tri2", exp / "gmm" / "tri2")  # aligned: train-clean-100
    fbank = exp / "data" / "fbank"
    shutil.copytree(small_gmm_exp / "data" / "fbank", fbank)
    cuts = load_manifest(fbank / "cuts_train-clean-100.jsonl.gz")
    good = cuts.subset(first=4)
    good.to_file(fbank / "cuts_dev-other.jsonl.gz")
    no_text = list(cuts.subset(first=2))
    for cut in no_text:
        cut.supervisions[0].text = ""
    CutSet.from_cuts(no_text).to_file(fbank / "cuts_test-other.jsonl.gz")
    ali = exp / "gmm" / "tri2" / "ali"
    train_ali = (ali / "cuts_train-clean-100.jsonl.gz").stat().st_mtime_ns
    args = ["--exp-dir", str(exp), "--lang-dir", str(small_gmm_exp / "lang"), "--system", "tri2"]
    assert align.main([*args, "--parts", "train-clean-100", "--optional-parts", "test-other", "dev-other"]) == 0
    info = json.loads((ali / "info.json").read_text())
    # train was aligned before and is kept; dev-other is added; test-other, without transcripts, is skipped.
    assert (ali / "cuts_train-clean-100.jsonl.gz").stat().st_mtime_ns == train_ali
    assert info["parts"]["train-clean-100"]["aligned"] == NUM_UTTS and info["failed"] == [BAD_CUT]
    assert info["parts"]["dev-other"]["aligned"] == 4 and len(load_manifest(ali / "cuts_dev-other.jsonl.gz")) == 4
    assert "no transcript" in info["unaligned"]["test-other"] and not (ali / "cuts_test-other.jsonl.gz").exists()
    # A rerun finds every part recorded; a part that must align cannot be skipped.
    before = (ali / "info.json").read_bytes()
    assert align.main([*args, "--parts", "train-clean-100", "--optional-parts", "test-other", "dev-other"]) == 0
    assert (ali / "info.json").read_bytes() == before
    (ali / "info.json").unlink()
    assert align.main([*args, "--parts", "test-other"]) == 2
