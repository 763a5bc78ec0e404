"""recipes/run.sh --preset tiny end to end: every stage, RESULTS.md, skipping on rerun, resuming after a kill.

The recipe runs once per test session (`tiny_recipe_exp`, shared with tests/test_decode_nnet.py): first
it is SIGKILLed (the whole process group) while an ensemble member trains, then rerun to the end.
Stage 1 (features) is not redone here: the `tiny_exp` fixture has already made the same fbank
cuts of the same corpus, so they are copied in and stage 1 is marked done.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
import pytest
import torch

from tests.markdown_table import table_row
from tests.recipe_run import KILL_INFO, REPO, RUN_SH, env_with_this_python, run_recipe


def _is_number(cell: str) -> bool:
    return re.fullmatch(r"-?\d+\.\d+", cell) is not None


def test_every_stage_left_its_done_marker(tiny_recipe_exp):
    for n in range(1, 12):
        assert (tiny_recipe_exp / f".stage{n}.done").is_file(), f"stage {n} has no done marker"


def test_results_has_both_tables_filled_with_numbers(tiny_recipe_exp):
    md = (tiny_recipe_exp / "RESULTS.md").read_text()
    for name in ("baseline", "ensemble of 2", "distilled single model"):
        cells = table_row(md, name)
        assert all(_is_number(c) for c in cells[1:5]), f"{name}: {cells}"  # dev/test frame acc, dev/test WER
        assert all(0 <= float(c) <= 100 for c in cells[1:3])
    assert all(_is_number(c) for c in table_row(md, "GMM tri2 (labels and graph)")[3:5])
    for name in ("baseline, 100% of train", "baseline, subset of train (early stopping)",
                 "soft targets, subset of train (no early stopping)",
                 "ensemble's soft targets, subset of train (no early stopping)"):
        cells = table_row(md, name)
        assert all(_is_number(c) for c in cells[1:3]), f"{name}: {cells}"
    assert "Gain recovered" in md and "(plots/dev_accuracy.png)" in md
    for plot in ("dev_accuracy.png", "wer_vs_lmwt.png", "wer_by_part.png"):
        assert (tiny_recipe_exp / "plots" / plot).is_file(), plot
    sure = md[md.index("## How sure the WER differences are"):]
    for name in ("distilled - baseline", "ensemble - baseline", "distilled - ensemble", "baseline - GMM tri2"):
        cells = table_row(sure, name)
        assert all(re.fullmatch(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\], P [01]\.\d\d", c) for c in cells[1:]), cells


def test_reported_test_frame_accuracy_matches_an_independent_count(tiny_recipe_exp):
    """Baseline on the test bank, recomputed here: windows clamped at utterance edges, arg-max vs label."""
    from asr_kd.models import FrameClassifier

    bank = tiny_recipe_exp / "bank" / "test"
    feats = np.load(bank / "feats.npy").astype(np.float32)
    labels = np.load(bank / "labels.npy")
    offsets = np.load(bank / "utt_offsets.npy")
    model = FrameClassifier.load(tiny_recipe_exp / "nnet" / "baseline" / "final.pt").eval()
    left, right = model.config.left_context, model.config.right_context
    correct = 0
    for start, end in zip(offsets[:-1], offsets[1:]):
        t = np.arange(start, end)
        pos = np.clip(t[:, None] + np.arange(-left, right + 1)[None, :], start, end - 1)
        with torch.no_grad():
            pred = model(torch.from_numpy(feats[pos])).argmax(-1).numpy()
        correct += int((pred == labels[start:end]).sum())
    ours = 100 * correct / len(labels)
    md = (tiny_recipe_exp / "RESULTS.md").read_text()
    assert float(table_row(md, "baseline")[2]) == pytest.approx(ours, abs=0.006)
    assert float(table_row(md, "baseline, 100% of train")[2]) == pytest.approx(ours, abs=0.006)


def test_the_student_learns_from_a_transfer_set_with_the_baselines_number_of_updates(tiny_recipe_exp):
    from asr_kd.data.frame_bank import UNLABELLED, FrameBank

    train = FrameBank.load(tiny_recipe_exp / "bank" / "train")
    transfer = FrameBank.load(tiny_recipe_exp / "bank" / "transfer")
    # The transfer set is the labelled train frames, then the train-clean-360 audio without labels.
    assert transfer.num_labelled_frames == train.num_frames < transfer.num_frames
    assert torch.equal(transfer.feats[:train.num_frames], train.feats)
    assert (transfer.labels[train.num_frames:] == UNLABELLED).all()
    store = json.loads((tiny_recipe_exp / "soft_T2" / "manifest.json").read_text())
    assert store["num_frames"] == transfer.num_frames and store["frame_bank_checksum"] == transfer.manifest["checksum"]
    student = json.loads((tiny_recipe_exp / "nnet" / "student" / "params.json").read_text())
    baseline = json.loads((tiny_recipe_exp / "nnet" / "baseline" / "params.json").read_text())
    assert student["train_bank"].endswith("bank/transfer")
    assert (student["steps_per_epoch"], student["num_epochs"]) == (baseline["steps_per_epoch"], baseline["num_epochs"])
    md = (tiny_recipe_exp / "RESULTS.md").read_text()
    assert "How the distilled model was taught: stored soft targets" in md and "unlabelled audio" in md


def test_student_epoch_transfer_makes_each_student_epoch_one_pass_over_its_transfer_set(tiny_recipe_exp, tiny_corpus,
                                                                                        tmp_path):
    from asr_kd.data.frame_bank import FrameBank

    # Stage 8 again beside the finished run's banks, members and soft targets.
    exp = tmp_path / "exp"
    (exp / "nnet").mkdir(parents=True)
    for name in ("data", "lang", "lang_test", "lm", "gmm", "bank", "soft_T2", "nnet/baseline", "nnet/member2"):
        (exp / name).symlink_to(tiny_recipe_exp / name)
    for stage in range(8):
        (exp / f".stage{stage}.done").touch()
    proc = run_recipe(exp, tiny_corpus, "--stop-stage", "8", "--student-epoch", "transfer")
    assert "each epoch one pass over it" in proc.stdout
    transfer = FrameBank.load(tiny_recipe_exp / "bank" / "transfer")
    train = FrameBank.load(tiny_recipe_exp / "bank" / "train")
    student = json.loads((exp / "nnet" / "student" / "params.json").read_text())
    baseline = json.loads((tiny_recipe_exp / "nnet" / "baseline" / "params.json").read_text())
    assert (student["epoch_frames"], baseline["epoch_frames"]) == (transfer.num_frames, train.num_frames)
    assert student["steps_per_epoch"] == transfer.num_frames // student["batch_size"] > baseline["steps_per_epoch"]
    subprocess.run(["python", "-m", "asr_kd.bin.report", "--exp-dir", str(exp), "--num-members", "2"], cwd=REPO,
                   env=env_with_this_python(), check=True, capture_output=True, timeout=600)
    md = (exp / "RESULTS.md").read_text()
    assert (f"the student's {student['steps_per_epoch']} ({transfer.num_frames} frames, one pass over its transfer "
            f"set), the baseline's and each member's {baseline['steps_per_epoch']} ({train.num_frames} frames)") in md
    assert "the same number of updates as the baseline" not in md


def test_an_unknown_student_epoch_is_refused(tmp_path):
    proc = subprocess.run(["bash", str(RUN_SH), "--preset", "tiny", "--exp-dir", str(tmp_path),
                           "--student-epoch", "passes"], cwd=REPO, env=env_with_this_python(),
                          capture_output=True, text=True, timeout=600)  # an immediate refusal: only a hang reaches it
    assert proc.returncode == 2 and "--student-epoch passes: give train" in proc.stderr


def test_decoding_normalises_inputs_as_the_frame_bank_did(tiny_recipe_exp):
    from lhotse import CutSet

    from asr_kd.data.cmvn import CmvnStats, normalised_features
    from asr_kd.data.frame_bank import FrameBank

    cmvn = CmvnStats.load(tiny_recipe_exp / "bank" / "cmvn.json")
    assert cmvn.mode == "speaker"
    bank = FrameBank.load(tiny_recipe_exp / "bank" / "dev")
    cuts = CutSet.from_file(tiny_recipe_exp / "gmm" / "tri2" / "ali" / "cuts_dev-clean.jsonl.gz")
    ours = np.concatenate([f for _, f in normalised_features(list(cuts), cmvn)])
    np.testing.assert_allclose(bank.feats.float().numpy(), ours, atol=2e-2)  # the bank stores fp16
    globally = CmvnStats.load(tiny_recipe_exp / "data" / "fbank" / "cmvn.json")
    assert np.abs(np.concatenate([globally.apply(c.load_features()) for c in cuts]) - ours).max() > 0.1
    # The decoder's own frame count (cuts normalised on the fly) agrees with the bank's.
    decoded = json.loads((tiny_recipe_exp / "decode" / "baseline" / "results.json").read_text())
    on_bank = json.loads((tiny_recipe_exp / "results" / "acc_baseline_dev.json").read_text())
    assert decoded["dev"]["frame_accuracy"] == pytest.approx(on_bank["accuracy"], abs=5e-3)


def test_killed_recipe_resumed_without_redoing_finished_stages(tiny_recipe_exp, tiny_corpus):
    info = json.loads((tiny_recipe_exp / KILL_INFO).read_text())
    assert not info["stage6_done_existed"]  # the kill did land inside stage 6
    # `asr-kd status` on the killed experiment named stage 6 as the next one, and the command to continue.
    assert info["status_next_stage"] == 6
    assert info["status_command"] == (f"recipes/run.sh --preset tiny --exp-dir {tiny_recipe_exp} "
                                      f"--corpus-dir {tiny_corpus} --stage 6")
    for path, mtime in info["mtimes"].items():
        assert (tiny_recipe_exp / path).stat().st_mtime_ns == mtime, f"{path} was redone after the kill"
    for n in range(1, 6):
        assert f"Stage {n}: done before" in info["rerun_stdout"]
    # member2 (member1 is the baseline) was cut off after its first epoch, every time: the rerun continued it
    # from its checkpoint.
    assert not info["member2_final_existed"]
    assert "resuming from" in (tiny_recipe_exp / "nnet" / "member2" / "train.log").read_text()


def test_rerun_skips_every_stage_and_changes_no_output(tiny_recipe_exp, tiny_corpus):
    def snapshot() -> dict[str, int]:
        return {str(p.relative_to(tiny_recipe_exp)): p.stat().st_mtime_ns for p in tiny_recipe_exp.rglob("*")
                if p.is_file() and p.parts[len(tiny_recipe_exp.parts)] != "log"}

    before = snapshot()
    proc = run_recipe(tiny_recipe_exp, tiny_corpus)
    assert snapshot() == before
    for n in range(1, 12):
        assert f"Stage {n}: done before" in proc.stdout
    assert "## Table 1" in proc.stdout and "## Table 5" in proc.stdout  # the tables are printed at the end


def test_unknown_option_is_refused(tmp_path, tiny_corpus):
    proc = subprocess.run(["bash", str(RUN_SH), "--preset", "tiny", "--exp-dir", str(tmp_path), "--num-memberz", "3"],
                          cwd=REPO, env=env_with_this_python(), capture_output=True, text=True,
                          timeout=600)  # an immediate refusal: only a hang reaches it
    assert proc.returncode == 2 and "--num-memberz" in proc.stderr


def test_a_dev_part_that_is_also_a_test_part_is_refused(tmp_path):
    proc = subprocess.run(["bash", str(RUN_SH), "--preset", "tiny", "--exp-dir", str(tmp_path),
                           "--dev-parts", "dev-clean,test-other"], cwd=REPO, env=env_with_this_python(),
                          capture_output=True, text=True, timeout=600)  # an immediate refusal: only a hang reaches it
    assert proc.returncode == 2 and "the dev part test-other is also a training, transfer or test part" in proc.stderr


def test_never_heard_voices_are_decoded_by_every_system_at_devs_lm_weight(tiny_recipe_exp, tiny_corpus):
    import jiwer

    refs = {}
    for path in (tiny_corpus / "LibriSpeech" / "test-other").glob("*/*/*.trans.txt"):
        refs.update(line.split(" ", 1) for line in path.read_text().splitlines())
    assert refs
    # The GMM: test-other decoded only at the weight dev chose, and its WER is jiwer's on its hypotheses.
    decode = tiny_recipe_exp / "gmm" / "tri2" / "decode"
    gmm = json.loads((decode / "results.json").read_text())
    dev = gmm["dev_wer_by_lmwt"]
    best = min(dev, key=lambda w: (dev[w], float(w)))
    assert gmm["lmwt"] == best and gmm["test_parts"] == ["test", "test-other"]
    assert [p.name for p in (decode / "test-other" / "scoring").iterdir()] == [f"{best}.txt"]
    hyps = dict(line.split(" ", 1) if " " in line else (line, "")
                for line in (decode / "test-other" / "scoring" / f"{best}.txt").read_text().splitlines())
    assert set(hyps) == set(refs)
    ids = sorted(refs)
    expected = 100 * jiwer.wer([refs[i] for i in ids], [hyps[i] or "<empty>" for i in ids])
    assert gmm["test-other"]["wer"] == pytest.approx(expected, abs=1e-3)
    gmm_wer = gmm["test-other"]["wer"]
    wers = {"GMM tri2 (labels and graph)": gmm_wer}
    for system, row in (("baseline", "baseline"), ("ensemble", "ensemble of 2"), ("student", "distilled single model")):
        decode = tiny_recipe_exp / "decode" / system
        res = json.loads((decode / "results.json").read_text())
        assert res["test_parts"] == ["test", "test-other"]
        assert [p.name for p in (decode / "test-other" / "scoring").iterdir()] == [f"{res['lmwt']}.txt"]
        hyps = dict(line.split(" ", 1) if " " in line else (line, "")
                    for line in (decode / "test-other" / "scoring" / f"{res['lmwt']}.txt").read_text().splitlines())
        assert set(hyps) == set(refs) and res["test-other"]["data"]["utterances"] == len(refs)
        expected = 100 * jiwer.wer([refs[i] for i in ids], [hyps[i] or "<empty>" for i in ids])
        assert res["test-other"]["wer"] == pytest.approx(expected, abs=1e-3)
        # Decoded from its fbank cuts, every utterance (the decoder has no labels); frame-scored on its bank below.
        assert res["test-other"]["frame_accuracy"] is None
        wers[row] = res["test-other"]["wer"]
    # RESULTS.md puts them in a table of their own after Table 1, beside each system's test WER.
    md = (tiny_recipe_exp / "RESULTS.md").read_text()
    never = md[md.index("## Voices never heard"):]
    assert "| system | test WER % | test-other WER % | test-other / test |" in never and "never-heard test set" in never
    for row, wer in wers.items():
        assert table_row(never, row.replace(" (labels and graph)", ""))[2] == f"{wer:.2f}"


def test_never_heard_voices_are_aligned_and_frame_scored_by_every_system(tiny_recipe_exp):
    from asr_kd.data.frame_bank import FrameBank

    # tri2 aligned test-other in stage 3; its bank holds the utterances that aligned.
    ali = json.loads((tiny_recipe_exp / "gmm" / "tri2" / "ali" / "info.json").read_text())
    aligned = ali["parts"]["test-other"]["aligned"]
    assert aligned > 0 and "unaligned" not in ali
    bank = FrameBank.load(tiny_recipe_exp / "bank" / "test-other")
    assert bank.manifest["num_utterances"] == aligned and bank.manifest["source_cuts"].endswith("cuts_test-other.jsonl.gz")
    md = (tiny_recipe_exp / "RESULTS.md").read_text()
    never = md[md.index("## Voices never heard"):]
    assert "| test-other / test | test-other frame acc % |" in never
    for system, row in (("baseline", "baseline"), ("ensemble", "ensemble of 2"), ("student", "distilled single model")):
        acc = json.loads((tiny_recipe_exp / "results" / f"acc_{system}_test-other.json").read_text())
        assert acc["num_frames"] == bank.num_frames
        assert table_row(never, row)[4] == f"{100 * acc['accuracy']:.2f}"
    assert table_row(never, "GMM tri2")[4] == "–"
    for system in ("baseline_subset", "student_subset", "student_subset_ensemble"):
        assert (tiny_recipe_exp / "results" / f"acc_{system}_test-other.json").is_file()


def test_status_lists_every_decoded_part(tiny_recipe_exp, capsys):
    from asr_kd.bin.status import main as status_main

    assert status_main(["--exp-dir", str(tiny_recipe_exp)]) == 0
    out = capsys.readouterr().out
    gmm = json.loads((tiny_recipe_exp / "gmm" / "tri2" / "decode" / "results.json").read_text())
    assert (f"GMM tri2 WER dev / test / test-other: {gmm['dev']['wer']:.2f}% / {gmm['test']['wer']:.2f}% / "
            f"{gmm['test-other']['wer']:.2f}% (LM weight {gmm['lmwt']})") in out
    scores = out[out.index("frame accuracy dev / test / test-other, WER dev / test / test-other (results/, decode/):"):]
    for system in ("baseline", "ensemble", "student"):
        line = next(line for line in scores.splitlines() if line.strip().startswith(f"{system} "))
        assert line.count("%") == 6 and "–" not in line


def test_the_baseline_is_the_ensembles_first_member(tiny_recipe_exp):
    nnet = tiny_recipe_exp / "nnet"
    assert (nnet / "member1").is_symlink() and (nnet / "member1").resolve() == (nnet / "baseline").resolve()
    seeds = {m: json.loads((nnet / m / "params.json").read_text())["seed"] for m in ("baseline", "member2")}
    assert seeds["baseline"] != seeds["member2"]  # the other members differ from it in their seed
    teacher = json.loads((tiny_recipe_exp / "soft_T2" / "manifest.json").read_text())["teacher"]
    assert teacher["num_members"] == 2  # the stored soft targets are of the baseline and member2
    assert "first member is the baseline itself" in (tiny_recipe_exp / "RESULTS.md").read_text()


def test_no_3pct_model_starts_from_a_teachers_initial_weights(tiny_recipe_exp):
    # A 3% student given its teacher's seed starts from the teacher's initial weights (egs/synth/RESULTS.md: worth
    # up to 6 test points); every full-data network is a teacher of some 3% student.
    nnet = tiny_recipe_exp / "nnet"
    seed_of = {m: json.loads((nnet / m / "params.json").read_text())["seed"]
               for m in ("baseline", "member2", "baseline_subset", "student_subset", "student_subset_ensemble")}
    teachers = {seed_of["baseline"], seed_of["member2"]}
    for model in ("baseline_subset", "student_subset", "student_subset_ensemble"):
        assert seed_of[model] not in teachers, (model, seed_of)


def test_a_member_count_whose_seeds_would_meet_the_3pct_models_is_refused(tmp_path):
    proc = subprocess.run(["bash", str(RUN_SH), "--preset", "tiny", "--exp-dir", str(tmp_path), "--num-members", "50"],
                          cwd=REPO, env=env_with_this_python(), capture_output=True, text=True,
                          timeout=600)  # an immediate refusal: only a hang reaches it
    assert proc.returncode == 2 and "--num-members 50: give 1-49" in proc.stderr


def test_the_rerun_trained_the_3pct_models_side_by_side_and_the_student_alone(tiny_recipe_exp):
    # --train-jobs auto: one network per core, at most num_members (2 in the tiny preset), each on cores / jobs
    # threads; stage 9 queues the three 3% models, the student (stage 8) trains alone in the foreground.
    cores = len(os.sched_getaffinity(0))
    jobs = min(cores, 2)
    run_log = (tiny_recipe_exp / "log" / "run.log").read_text()
    rerun_stdout = json.loads((tiny_recipe_exp / KILL_INFO).read_text())["rerun_stdout"]
    assert "train_student: started" not in run_log
    names = ("train_student_subset_ensemble", "train_baseline_subset", "train_student_subset")
    for name in names:
        model = name.removeprefix("train_")
        train_log = (tiny_recipe_exp / "nnet" / model / "train.log").read_text()
        if jobs == 1:  # one core: one after the other, in the foreground
            assert f"{name}: started" not in run_log
            continue
        threads = max(1, cores // jobs)
        assert f"{name}: started, {threads} thread(s), output in {tiny_recipe_exp}/log/{name}.log" in run_log
        assert f"{name}: exit status 0" in run_log
        assert f"{threads} CPU thread(s)" in train_log  # the trainer ran on the threads it was given
        assert (tiny_recipe_exp / "log" / f"{name}.log").stat().st_size > 0
        assert f"  {name}: epoch 1: train loss" in rerun_stdout  # its progress, one line per epoch
    # Stage 9's marker came after every one of its networks had finished.
    last_stage9 = run_log.rindex("Stage 9: finished")
    assert all(run_log.rindex(f"{name}: ") < last_stage9 for name in names if jobs > 1)


def test_newbob_thresholds_given_to_the_recipe_reach_every_full_data_network(tiny_recipe_exp, tiny_corpus, tmp_path):
    # Stages 5-6 again, on the finished experiment's frame banks, with thresholds that are neither the trainer's
    # defaults nor the tiny preset's: each network's params.json holds what the recipe was given.
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "bank").symlink_to(tiny_recipe_exp / "bank")
    for stage in range(5):
        (exp / f".stage{stage}.done").touch()
    run_recipe(exp, tiny_corpus, "--stop-stage", "6", "--lr-schedule", "newbob", "--newbob-start-gain", "0.003",
               "--newbob-end-gain", "0.001")
    for name in ("baseline", "member2"):
        params = json.loads((exp / "nnet" / name / "params.json").read_text())
        assert (params["lr_schedule"], params["newbob_start_gain"], params["newbob_end_gain"]) == \
            ("newbob", 0.003, 0.001), name


def test_train_copies_put_every_full_data_network_on_train_and_its_copies_at_the_epoch_size_asked(
        tiny_recipe_exp, tiny_corpus, tmp_path):
    from asr_kd.data.frame_bank import UNLABELLED, FrameBank

    # Stages 4-8 again on the finished experiment's features, lang and GMM, with a volume copy of train (it keeps
    # its source's alignment) filling half of every epoch, masked windows, and the members teaching online (as
    # recipes/conf/mini_aug.conf has it), each epoch twice train's frames, every network's input frames liftered;
    # the student's epochs three quarters train and the unlabelled transfer audio (its own shares).
    exp = tmp_path / "exp"
    exp.mkdir()
    for name in ("data", "lang", "lang_test", "lm", "gmm"):
        (exp / name).symlink_to(tiny_recipe_exp / name)
    for stage in range(4):
        (exp / f".stage{stage}.done").touch()
    run_recipe(exp, tiny_corpus, "--stop-stage", "8", "--train-copies", "volume", "--train-mix-shares", "original=0.5",
               "--train-epoch-scale", "2", "--augment", "freq_mask=4", "--soft-targets", "online",
               "--input-lifter", "13", "--student-mix-shares", "original=0.75")
    train = FrameBank.load(exp / "bank" / "train")
    both = FrameBank.load(exp / "bank" / "train_copies")
    assert sorted(both.cut_ids) == sorted([*train.cut_ids, *(f"{c}_volume" for c in train.cut_ids)])
    index = {c: u for u, c in enumerate(both.cut_ids)}
    for u, cut_id in enumerate(train.cut_ids):  # each copy: its source's labels, other features (louder or softer)
        feats, labels = train.utterance(u)
        copy_feats, copy_labels = both.utterance(index[f"{cut_id}_volume"])
        assert np.array_equal(copy_labels, labels) and not np.allclose(copy_feats, feats)
    # The student's transfer set: train and its copy, then the unlabelled part, which the members label online.
    transfer = FrameBank.load(exp / "bank" / "transfer")
    assert transfer.num_labelled_frames == both.num_frames == 2 * train.num_frames < transfer.num_frames
    assert (transfer.labels[both.num_frames:] == UNLABELLED).all()
    assert not (exp / "soft_T2").exists()
    members = [str(exp / "nnet" / f"member{m}" / "final.pt") for m in (1, 2)]
    assert json.loads((exp / "nnet" / "student" / "params.json").read_text())["teacher_checkpoints"] == members
    for name, bank, shares in (("baseline", both, "original=0.5"), ("member2", both, "original=0.5"),
                               ("student", transfer, "original=0.75")):
        params = json.loads((exp / "nnet" / name / "params.json").read_text())
        assert params["train_bank"] == str(bank.directory), name
        assert (params["epoch_frames"], params["mix_shares"], params["augment"], params["input_lifter"]) == \
            (2 * train.num_frames, shares, "freq_mask=4", 13), name
    for name in ("baseline", "member2"):  # half of twice train's frames: train once an epoch
        log = (exp / "nnet" / name / "train.log").read_text()
        assert f"frames per epoch by group (--mix-shares original=0.5): original {train.num_frames} of " in log, name
    # The student's group original is train and the unlabelled audio: three quarters of twice train's frames from it.
    drawn, size = map(int, re.search(r"by group \(--mix-shares original=0\.75\): original (\d+) of (\d+)",
                                     (exp / "nnet" / "student" / "train.log").read_text()).groups())
    assert size == transfer.num_frames - train.num_frames and abs(drawn - 1.5 * train.num_frames) <= 1
    # The report says what the full-data networks trained on.
    subprocess.run(["python", "-m", "asr_kd.bin.report", "--exp-dir", str(exp), "--num-members", "2"], cwd=REPO,
                   env=env_with_this_python(), check=True, capture_output=True, timeout=600)
    md = (exp / "RESULTS.md").read_text()
    assert (f"trained on train and perturbed copies of it (volume): {both.num_frames} frames against train's "
            f"{train.num_frames}, each epoch {2 * train.num_frames} frames, shares by group original=0.5; the "
            "student's epochs shared by group original=0.75 (its transfer set's unlabelled audio in the group "
            "original, beside train).") in md


@pytest.mark.parametrize("options, message", [
    (("--train-mix-shares", "original=0.5"), "--train-mix-shares original=0.5 needs --train-copies"),
    (("--student-mix-shares", "original=0.5"), "--student-mix-shares original=0.5 needs --train-copies"),
    (("--train-epoch-scale", "4"), "--train-epoch-scale 4 needs --train-copies"),
    (("--train-copies", "volume", "--train-epoch-scale", "1.5"), "--train-epoch-scale 1.5: give a whole number"),
    (("--augment", "freq_mask=4"), "give --soft-targets online"),  # the tiny preset's targets are stored
    # Malformed network options, refused by the parsers of the stages that would take them (asr-kd check-options).
    (("--model-shape", "3x"), "--model-shape: unknown model shape '3x'"),
    (("--input-lifter", "41"), "--input-lifter: FrameClassifierConfig: input_lifter must be in [0, feat_dim=40]"),
    (("--input-lifter", "13.5"), "--input-lifter: give a whole number of cepstral coefficients"),
    (("--subset-augment", "freq_mask=wide"), "freq_mask needs a number, got 'wide'"),
    (("--train-copies", "volume,louder"), "--train-copies: unknown perturbation 'louder'"),
    (("--subset-copies", "revoice0"), "--train-copies: unknown perturbation 'revoice0'"),
    (("--train-copies", "volume", "--train-mix-shares", "original=2"), "--mix-shares 'original=2'"),
    (("--train-copies", "volume", "--student-mix-shares", "volume=-1"), "--mix-shares 'volume=-1'"),
])
def test_augmentation_options_that_cannot_work_together_are_refused(tmp_path, options, message):
    proc = subprocess.run(["bash", str(RUN_SH), "--preset", "tiny", "--exp-dir", str(tmp_path), *options], cwd=REPO,
                          env=env_with_this_python(), capture_output=True, text=True,
                          timeout=600)  # an immediate refusal: only a hang reaches it
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "log").exists()  # refused before anything was written


@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO / "recipes" / "conf").glob("*.conf")))
def test_every_shipped_preset_passes_the_recipes_option_checks(tmp_path, preset):
    # --stage 100 runs no stage: only the checks (and the hardware line), as a run of the preset starts.
    proc = subprocess.run(["bash", str(RUN_SH), "--preset", preset, "--exp-dir", str(tmp_path), "--stage", "100"],
                          cwd=REPO, env=env_with_this_python(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"Finished stages 100..100 in {tmp_path}" in proc.stderr + proc.stdout


def test_run_log_says_where_and_in_which_precision_the_networks_ran(tiny_recipe_exp):
    run_log = (tiny_recipe_exp / "log" / "run.log").read_text()
    assert re.search(r"\) hardware: \d+ cores of .+ \(bf16 units: [\w+-]+\), torch ", run_log)
    # The tiny preset pins --device cpu --amp none: fp32, chosen, so nothing to warn about; the baseline trained so.
    assert ") networks: --device cpu -> cpu, --amp none -> fp32" in run_log
    assert "warning:" not in run_log
    assert " on cpu, " in (tiny_recipe_exp / "nnet" / "baseline" / "train.log").read_text()


def _preset_values(preset: str, *names: str) -> list[str]:
    """Values of `names` in recipes/conf/<preset>.conf, read by bash as the recipe reads them."""
    script = f'. "{REPO}/recipes/conf/{preset}.conf"; ' + "; ".join(f'echo "${{{n}}}"' for n in names)
    return subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout.splitlines()


def test_soft_target_subset_students_train_on_the_subset_and_its_copies_at_their_hard_weight(tiny_recipe_exp):
    from asr_kd.data.frame_bank import FrameBank

    copies, subset_hw, hard_weight, fraction, seed = _preset_values(
        "tiny", "subset_copies", "subset_hard_weight", "hard_weight", "subset_fraction", "subset_seed")
    assert copies and subset_hw != hard_weight  # the preset exercises both options
    train = FrameBank.load(tiny_recipe_exp / "bank" / "train")
    subset = {train.cut_ids[u] for u in train.subset_utterances(float(fraction), int(seed))}
    copies_bank = tiny_recipe_exp / "subset_copies" / "bank"
    bank = FrameBank.load(copies_bank)
    ids = bank.cut_ids
    # The subset's utterances, each perturbation's copies of them (a speed copy that fails to align is left out).
    assert subset <= set(ids)
    assert set(ids) - subset <= {f"{i}_{p}" for i in subset for p in copies.split(",")}
    assert {f"{i}_volume" for i in subset} <= set(ids)
    for system in ("student_subset", "student_subset_ensemble"):
        params = json.loads((tiny_recipe_exp / "nnet" / system / "params.json").read_text())
        assert params["train_bank"] == str(copies_bank) and params["subset_fraction"] == 1.0
        assert params["hard_weight"] == float(subset_hw)
    hard_subset = json.loads((tiny_recipe_exp / "nnet" / "baseline_subset" / "params.json").read_text())
    assert hard_subset["train_bank"] == str(tiny_recipe_exp / "bank" / "train")
    assert hard_subset["subset_fraction"] == float(fraction)
    student = json.loads((tiny_recipe_exp / "nnet" / "student" / "params.json").read_text())
    assert student["hard_weight"] == float(hard_weight)
    md = (tiny_recipe_exp / "RESULTS.md").read_text()
    table5 = md[md.index("## Table 5"):]
    assert (f"with hard-label weight {float(subset_hw):g}, on its {len(subset)} utterances and their perturbed "
            f"copies ({copies.replace(',', ', ')}; {bank.num_frames} frames against ") in table5
