"""RESULTS.md from an experiment directory: tables, LM-weight choice, gain recovered, missing stages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from asr_kd.bin import report
from asr_kd.report.collect import collect_results, search_choice
from asr_kd.report.plots import curve_labels
from asr_kd.report.tables import gain_recovered
from tests.markdown_table import table_row


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


def test_gain_recovered_is_the_students_share_of_the_ensembles_gain():
    # Ensemble 10 points over the baseline, student 8: 80% of the gain, as in the paper's claim.
    assert gain_recovered(50.0, 60.0, 58.0) == pytest.approx(80.0)
    assert gain_recovered(50.0, 60.0, 45.0) == pytest.approx(-50.0)
    assert gain_recovered(50.0, 50.0, 55.0) is None  # no gain to recover
    assert gain_recovered(None, 60.0, 58.0) is None


def test_report_of_an_experiment_with_no_stages_run_shows_dashes(tmp_path):
    assert report.main(["--exp-dir", str(tmp_path), "--num-members", "3"]) == 0
    md = (tmp_path / "RESULTS.md").read_text()
    assert "## Table 1" in md and "## Table 5" in md
    assert table_row(md, "baseline")[1:5] == ["–"] * 4
    assert table_row(md, "ensemble of 3")[1:5] == ["–"] * 4
    # The paper's numbers are there even when ours are not.
    assert table_row(md, "distilled single model")[5:] == ["60.8", "10.7"]
    assert table_row(md, "baseline, subset of train (early stopping)")[1:] == ["–", "–", "67.3", "44.5"]


@pytest.mark.parametrize("layout", ["decode/results.json", "earlier decode_<part>/wer.json"])
def test_gmm_wer_uses_the_lm_weight_best_on_dev_for_test(tmp_path, layout):
    # Dev prefers weight 10 (25% < 30%); test is reported at 10 (40%) even though 8 is better on test.
    if layout == "decode/results.json":  # `asr-kd decode-gmm --every-weight`: test decoded at every weight too
        _write(tmp_path / "gmm/tri2/decode/results.json",
               {"lmwt": "10", "dev_wer_by_lmwt": {"8": 30.0, "10": 25.0}, "test_parts": ["test"],
                "dev": {"wer": 25.0, "rtf": 0.2}, "test": {"wer": 40.0, "rtf": 0.3, "wer_by_lmwt": {"8": 10.0, "10": 40.0}}})
    else:  # an experiment decoded before the one decode path: the report still reads it
        dev = {"by_lmwt": {"8": {"wer": 0.30, "rtf": 0.1}, "10": {"wer": 0.25, "rtf": 0.2}}}
        test = {"by_lmwt": {"8": {"wer": 0.10, "rtf": 0.1}, "10": {"wer": 0.40, "rtf": 0.3}}}
        _write(tmp_path / "gmm/tri2/decode_dev-clean/wer.json", dev)
        _write(tmp_path / "gmm/tri2/decode_test-clean/wer.json", test)
    res = collect_results(tmp_path, 2)
    assert res.gmm["lmwt"] == "10"
    assert res.wer("gmm", "dev") == pytest.approx(25.0) and res.wer("gmm", "test") == pytest.approx(40.0)
    assert report.main(["--exp-dir", str(tmp_path), "--num-members", "2", "--no-plots"]) == 0
    assert table_row((tmp_path / "RESULTS.md").read_text(), "GMM tri2 (labels and graph)")[3:5] == ["25.00", "40.00"]


def _acc(value: float, **extra) -> dict:
    return {"accuracy": value, "cross_entropy": 1.0, "num_frames": 1000, "subset_fraction": 1.0, "subset_seed": 0,
            "utterances": 10, "hardware": {"cpu": "test cpu", "cores": 2, "gpu": None, "torch": "x", "python": "3"},
            **extra}


def test_tables_carry_accuracies_wers_and_the_gain_recovered(tmp_path):
    for system, (dev, test) in {"baseline": (0.50, 0.40), "ensemble": (0.60, 0.50), "student": (0.58, 0.47)}.items():
        _write(tmp_path / f"results/acc_{system}_dev.json", _acc(dev))
        _write(tmp_path / f"results/acc_{system}_test.json", _acc(test))
        _write(tmp_path / f"decode/{system}/results.json",
               {"lmwt": "10", "dev_wer_by_lmwt": {"10": 30.0}, "dev": {"wer": 30.0}, "test": {"wer": 20.0, "rtf": 0.05}})
    _write(tmp_path / "results/acc_baseline_subset_train.json", _acc(0.9, subset_fraction=0.03, utterances=4))
    _write(tmp_path / "results/commands.tsv", "decode_baseline\tpython -m asr_kd.bin.decode_nnet --a | b\n")
    assert report.main(["--exp-dir", str(tmp_path), "--num-members", "2", "--no-plots"]) == 0
    md = (tmp_path / "RESULTS.md").read_text()
    assert table_row(md, "baseline")[1:5] == ["50.00", "40.00", "30.00", "20.00"]
    assert table_row(md, "ensemble of 2")[1:3] == ["60.00", "50.00"]
    # test: (47 - 40) / (50 - 40) = 70%; dev: (58 - 50) / (60 - 50) = 80%.
    assert re.search(r"\*\*70\.0%\*\* \(dev: 80\.0%", md)
    assert table_row(md, "baseline, subset of train (early stopping)")[1:3] == ["90.00", "–"]
    assert "3% of the training utterances (4 utterances" in md
    assert "`python -m asr_kd.bin.decode_nnet --a \\| b`" in md  # the pipe cannot end the cell
    assert "2 cores of test cpu" in md


def test_provenance_gives_one_row_per_command_naming_every_output_it_made(tmp_path):
    # One frame-accuracy run scores the baseline on dev and test; the student's dev has a command of its own.
    both = "asr-kd frame-accuracy --model nnet/baseline/final.pt --frame-bank bank/dev bank/test"
    _write(tmp_path / "results/acc_baseline_dev.json", _acc(0.5, command=both))
    _write(tmp_path / "results/acc_baseline_test.json", _acc(0.4, command=both))
    _write(tmp_path / "results/acc_student_dev.json", _acc(0.6, command="asr-kd frame-accuracy --model s"))
    assert report.main(["--exp-dir", str(tmp_path), "--num-members", "2", "--no-plots"]) == 0
    provenance = (tmp_path / "RESULTS.md").read_text().split("## Provenance")[1]
    assert provenance.count(f"`{both}`") == 1
    assert f"| acc_baseline_dev, acc_baseline_test | `{both}` |" in provenance
    assert "| acc_student_dev | `asr-kd frame-accuracy --model s` |" in provenance


def test_plots_are_pngs_of_the_training_curves_and_lm_weight_sweep(tmp_path):
    header = "epoch,step,lr,loss,train_acc,dev_acc,dev_ce,frames_per_s\n"
    for name in ("baseline", "member1", "member2", "student"):
        _write(tmp_path / f"nnet/{name}/metrics.csv", header + "1,10,0.1,2.0,0.3,,,\n1,20,0.1,2,0.3,0.35,2.1,100\n"
               "2,40,0.1,1.5,0.4,0.45,1.9,100\n")
    _write(tmp_path / "decode/baseline/results.json",
           {"lmwt": "10", "dev_wer_by_lmwt": {"8": 31.0, "10": 30.0}, "dev": {"wer": 30.0}})
    res = collect_results(tmp_path, 2)
    assert res.curves["baseline"] == [(1, 0.35), (2, 0.45)]  # only end-of-epoch rows carry dev_acc
    assert report.main(["--exp-dir", str(tmp_path), "--num-members", "2"]) == 0
    for name in ("dev_accuracy.png", "wer_vs_lmwt.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(plots/{name})" in (tmp_path / "RESULTS.md").read_text()


def test_curve_labels_give_each_epochs_frames_only_where_the_epochs_differ(tmp_path):
    # A student whose epoch is one pass over a 4x larger transfer set: its epoch 5 is not the baseline's.
    header = "epoch,step,lr,loss,train_acc,dev_acc,dev_ce,frames_per_s\n1,10,0.1,2.0,0.3,0.35,2.1,100\n"
    for name, frames in (("baseline", 958_505), ("member2", 958_505), ("student", 3_975_540),
                         ("student_subset", 27_782)):
        _write(tmp_path / f"nnet/{name}/metrics.csv", header)
        _write(tmp_path / f"nnet/{name}/params.json", {"epoch_frames": frames})
    res = collect_results(tmp_path, 2, fingerprint=False)
    assert res.epoch_frames["student"] == 3_975_540 and res.epoch_frames["member1"] is None  # no member1 here
    labels = curve_labels(["baseline", "member2", "student", "student_subset"], res.epoch_frames)
    assert labels == {"baseline": "baseline (epoch 0.96 M frames)", "member2": "ensemble members (epoch 0.96 M frames)",
                      "student": "student (epoch 3.98 M frames)", "student_subset": "student_subset (epoch 27.8 k frames)"}
    # Epochs of one size (the mini preset without a transfer set or subset models): the names alone.
    assert curve_labels(["baseline", "member2"], res.epoch_frames) == {"baseline": "baseline",
                                                                       "member2": "ensemble members"}


def test_report_of_a_missing_experiment_dir_is_an_input_error(tmp_path, capsys):
    assert report.main(["--exp-dir", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_lm_perplexities_of_the_full_and_the_pruned_lm_are_listed(tmp_path):
    dev = {"ppl": 213.41, "num_sentences": 296}
    _write(tmp_path / "lm/info.json", {"order": 3, "train_words": 1000, "full_dev": dev,
                                       "g_dev": dict(dev, ppl=223.2)})
    assert report.main(["--exp-dir", str(tmp_path), "--no-plots"]) == 0
    md = (tmp_path / "RESULTS.md").read_text()
    assert "- full LM: 3-gram on 1000 words; dev perplexity 213.4 over 296 sentences" in md
    assert "- pruned LM in G.fst: 3-gram on 1000 words; dev perplexity 223.2" in md


def _seed_run(path: Path, accs: dict[str, tuple[float, float]], wers: dict[str, tuple[float, float]]) -> None:
    for system, (dev, test) in accs.items():
        _write(path / f"results/acc_{system}_dev.json", _acc(dev))
        _write(path / f"results/acc_{system}_test.json", _acc(test))
    for system, (dev, test) in wers.items():
        _write(path / f"decode/{system}/results.json",
               {"lmwt": "10", "dev_wer_by_lmwt": {"10": dev}, "dev": {"wer": dev}, "test": {"wer": test}})


def test_network_seeds_are_averaged_and_their_spread_listed(tmp_path):
    wers = {"baseline": (12.0, 13.0), "ensemble": (10.0, 11.0), "student": (11.0, 12.0)}
    _seed_run(tmp_path / "s1", {"baseline": (0.50, 0.40), "ensemble": (0.60, 0.50), "student": (0.58, 0.48)}, wers)
    _seed_run(tmp_path / "s2", {"baseline": (0.52, 0.42), "ensemble": (0.60, 0.50), "student": (0.56, 0.46)},
              {**wers, "student": (11.5, 12.5)})
    assert report.main(["--exp-dir", str(tmp_path / "s1"), "--num-members", "2", "--no-plots",
                        "--seed-exp-dirs", str(tmp_path / "s2"), "--seeds", "1", "7"]) == 0
    md = (tmp_path / "s1" / "RESULTS.md").read_text()
    # Table 1 shows the means of the two runs.
    assert table_row(md, "baseline")[1:5] == ["51.00", "41.00", "12.00", "13.00"]
    assert table_row(md, "distilled single model")[1:5] == ["57.00", "47.00", "11.25", "12.25"]
    # The gain is each seed's gain, averaged: test (80% + 50%) / 2 = 65%, not the gain of the means (66.7%).
    assert re.search(r"network seeds 1, 7 of each seed's gain\): \*\*65\.0%\*\*", md)
    assert "## Spread over network seeds" in md
    assert table_row(md, "7")[1:5] == ["42.00", "50.00", "46.00", "50.00"]  # seed 7's test row: its own gain is 50%
    assert table_row(md, "mean ± sd")[1] == "41.00 ± 1.41"
    assert report.main(["--exp-dir", str(tmp_path / "s1"), "--seed-exp-dirs", str(tmp_path / "s2"),
                        "--seeds", "1"]) == 2


def test_never_heard_wers_get_a_table_beside_test_with_the_seed_spread(tmp_path):
    # GMM: dev chooses 10; test-other at 10 is 60% (at 8 it would be 50%).
    gmm = {"lmwt": "10", "dev_wer_by_lmwt": {"8": 30.0, "10": 25.0}, "test_parts": ["test", "test-other"],
           "dev": {"wer": 25.0}, "test": {"wer": 40.0}, "test-other": {"wer": 60.0, "wer_by_lmwt": {"8": 50.0, "10": 60.0}}}
    for run, student in (("s1", 40.0), ("s2", 44.0)):
        exp = tmp_path / run
        _write(exp / "gmm/tri2/decode/results.json", gmm)
        _write(exp / "corpus/summary.json", {"splits": {"test-clean": {}, "test-other": {}}})
        for system, never_heard in {"baseline": 50.0, "ensemble": 35.0, "student": student}.items():
            _write(exp / f"decode/{system}/results.json",
                   {"lmwt": "10", "test_parts": ["test", "test-other"], "dev_wer_by_lmwt": {"10": 20.0},
                    "dev": {"wer": 20.0}, "test": {"wer": 25.0}, "test-other": {"wer": never_heard}})
    assert report.main(["--exp-dir", str(tmp_path / "s1"), "--num-members", "2", "--no-plots"]) == 0
    md = (tmp_path / "s1" / "RESULTS.md").read_text()
    # Table 1 keeps the paper's columns; the never-heard voices get their own table after it.
    table1 = md[md.index("## Table 1"):md.index("## Voices never heard")]
    assert "test-other" not in table1
    assert table_row(table1, "GMM tri2 (labels and graph)")[3:5] == ["25.00", "40.00"]
    never = md[md.index("## Voices never heard"):]
    assert "| system | test WER % | test-other WER % | test-other / test |" in never
    assert table_row(never, "GMM tri2")[1:] == ["40.00", "60.00", "1.50"]
    assert table_row(never, "baseline")[1:] == ["25.00", "50.00", "2.00"]
    assert table_row(never, "distilled single model")[1:] == ["25.00", "40.00", "1.60"]
    assert "test-other is the never-heard test set" in never and "Klatt" in never
    # Three seeds' path (two here): the mean in Table 1 and a per-seed never-heard WER table.
    assert report.main(["--exp-dir", str(tmp_path / "s1"), "--num-members", "2", "--no-plots",
                        "--seed-exp-dirs", str(tmp_path / "s2"), "--seeds", "1", "2"]) == 0
    md = (tmp_path / "s1" / "RESULTS.md").read_text()
    never = md[md.index("## Voices never heard"):]
    assert table_row(never, "distilled single model")[1:3] == ["25.00", "42.00"]
    section = md[md.index("Test-other WER % (GMM tri2: 60.00)"):]
    assert table_row(section, "2")[1:4] == ["50.00", "35.00", "44.00"]
    assert table_row(section, "mean ± sd")[3] == "42.00 ± 2.83"


def test_other_test_and_dev_parts_get_their_wers_and_the_frame_accuracy_of_those_aligned(tmp_path):
    from asr_kd.report.status import experiment_status, render_status

    parts = ["test", "test-other", "dev-other"]
    _write(tmp_path / "gmm/tri2/decode/results.json",
           {"lmwt": "10", "dev_wer_by_lmwt": {"10": 25.0}, "test_parts": parts, "dev": {"wer": 25.0},
            "test": {"wer": 40.0}, "test-other": {"wer": 60.0}, "dev-other": {"wer": 50.0}})
    for system, (test_other, dev_other, acc) in {"baseline": (50.0, 45.0, 0.30), "ensemble": (35.0, 30.0, 0.40),
                                                 "student": (40.0, 36.0, 0.35)}.items():
        _write(tmp_path / f"decode/{system}/results.json",
               {"lmwt": "10", "test_parts": parts, "dev_wer_by_lmwt": {"10": 20.0}, "dev": {"wer": 20.0},
                "test": {"wer": 25.0}, "test-other": {"wer": test_other}, "dev-other": {"wer": dev_other}})
        _write(tmp_path / f"results/acc_{system}_test-other.json", _acc(acc))  # dev-other did not align
    assert report.main(["--exp-dir", str(tmp_path), "--num-members", "2", "--no-plots"]) == 0
    md = (tmp_path / "RESULTS.md").read_text()
    others = md[md.index("## Other test and dev parts"):]  # LibriSpeech's parts: no never-heard voices here
    assert ("| system | test WER % | test-other WER % | dev-other WER % | test-other / test | dev-other / test "
            "| test-other frame acc % |") in others
    assert table_row(others, "baseline")[1:] == ["25.00", "50.00", "45.00", "2.00", "1.80", "30.00"]
    assert table_row(others, "GMM tri2")[1:] == ["40.00", "60.00", "50.00", "1.50", "1.25", "–"]
    assert "dev-other: another dev part" in others and "no frame accuracy on dev-other: not aligned by tri2" in others
    status = render_status(experiment_status(tmp_path))
    assert "GMM tri2 WER dev / test / test-other / dev-other: 25.00% / 40.00% / 60.00% / 50.00%" in status
    assert "frame accuracy dev / test / test-other, WER dev / test / test-other / dev-other" in status
    baseline = next(line for line in status.splitlines() if line.strip().startswith("baseline "))
    assert "– / – / 30.00%" in baseline and baseline.endswith("20.00% / 25.00% / 50.00% / 45.00%")


@pytest.mark.parametrize("schedule, rule", [
    ("newbob", "halved from the first epoch that gained less than 0.5 points of dev accuracy"),
    ("plateau", "halved after each epoch that gained less than 0.5 points of dev accuracy")])
def test_a_newbob_students_budget_lists_the_epochs_each_network_trained(tmp_path, schedule, rule):
    # Under newbob or plateau every network stops on its own: the note names the rule and each one's epochs,
    # read from its metrics.csv.
    header = "epoch,step,lr,loss,train_acc,dev_acc,dev_ce,frames_per_s\n"
    epochs = {"baseline": 11, "member2": 13, "student": 9}
    for name, n in epochs.items():
        _write(tmp_path / f"nnet/{name}/metrics.csv",
               header + "".join(f"{e},{10 * e},0.1,1.0,0.5,{0.3 + e / 100},1.0,100\n" for e in range(1, n + 1)))
    (tmp_path / "nnet" / "member1").symlink_to("baseline")
    _write(tmp_path / "nnet/student/params.json",
           {"frame_bank": str(tmp_path / "bank"), "epoch_frames": 1000, "steps_per_epoch": 10, "num_epochs": 30,
            "batch_size": 100, "temperature": 2.0, "hard_weight": 0.5, "lr_schedule": schedule,
            "newbob_start_gain": 0.005, "newbob_end_gain": 0.0005, "teacher_checkpoints": ["a", "b"]})
    assert report.main(["--exp-dir", str(tmp_path), "--num-members", "2", "--no-plots"]) == 0
    md = (tmp_path / "RESULTS.md").read_text()
    assert rule in md and "gained less than 0.05; at most 30 epochs" in md
    assert "epochs trained: baseline 11, member2 13, student 9." in md
    assert "The ensemble's first member is the baseline itself" in md


def test_search_choice_names_the_penalty_only_where_one_was_chosen():
    assert search_choice({"lmwt": "9"}) == "9"  # a results.json from before penalties were swept
    assert search_choice({"lmwt": "9", "word_ins_penalty": "0"}) == "9"
    assert search_choice({"lmwt": "7", "word_ins_penalty": "0.5"}) == "7, wip 0.5"
    assert search_choice({}) is None


@pytest.mark.parametrize("lifter", [0, 13])
def test_network_inputs_name_the_normalisation_and_the_baselines_lifter(tmp_path, lifter):
    _write(tmp_path / "bank/cmvn.json", {"mode": "speaker_cepstral_mvn"})
    _write(tmp_path / "nnet/baseline/params.json",
           {"frame_bank": str(tmp_path / "bank"), "epoch_frames": 1000, "steps_per_epoch": 10, "input_lifter": lifter})
    assert report.main(["--exp-dir", str(tmp_path), "--no-plots"]) == 0
    line = next(x for x in (tmp_path / "RESULTS.md").read_text().splitlines() if x.startswith("- network inputs:"))
    assert line.startswith("- network inputs: speaker_cepstral_mvn CMVN")
    assert ("first 13 cepstral coefficients (`--input-lifter 13`)" in line) == (lifter == 13)
