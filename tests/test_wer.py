"""WER scoring: hand-counted edits, per-utterance reports, LM-weight selection on dev."""

from __future__ import annotations

from pathlib import Path

import pytest

from asr_kd.score.wer import align, compute_wer, read_transcripts, score_dev_test, select_lm_weight
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import read_json

REFS = {
    "u1": "THE CAT SAT ON THE MAT",
    "u2": "A DOG",
    "u3": "HELLO WORLD",
}
# u1: CAT->BAT (sub), ON deleted, MAT kept, NOW inserted at the end: 1 S, 1 D, 1 I.
# u2: exact. u3: no hypothesis line at all -> 2 deletions.
HYPS = {
    "u1": "THE BAT SAT THE MAT NOW",
    "u2": "A DOG",
}


def test_counts_match_hand_counted_edits():
    result = compute_wer(REFS, HYPS)
    assert (result.substitutions, result.deletions, result.insertions) == (1, 3, 1)
    assert result.num_ref_words == 6 + 2 + 2
    assert result.wer == pytest.approx(100 * 5 / 10)
    assert result.num_sentence_errors == 2 and result.ser == pytest.approx(100 * 2 / 3)
    assert result.summary().splitlines() == ["%WER 50.00 [ 5 / 10, 1 ins, 3 del, 1 sub ]", "%SER 66.67 [ 2 / 3 ]"]


def test_alignment_ops_name_the_words():
    u = align("u1", REFS["u1"].split(), HYPS["u1"].split())
    assert u.ops == [
        ("C", "THE", "THE"), ("S", "CAT", "BAT"), ("C", "SAT", "SAT"), ("D", "ON", None),
        ("C", "THE", "THE"), ("C", "MAT", "MAT"), ("I", None, "NOW"),
    ]
    # Empty reference: every hypothesis word is an insertion; empty hypothesis: all deletions.
    assert align("x", [], ["A", "B"]).ops == [("I", None, "A"), ("I", None, "B")]
    assert [op for op, _, _ in align("y", ["A", "B"], []).ops] == ["D", "D"]


def test_per_utt_report_rows_line_up():
    text = compute_wer({"u1": REFS["u1"]}, {"u1": HYPS["u1"]}).per_utt_text().splitlines()
    assert text[0].split()[2:] == ["THE", "CAT", "SAT", "ON", "THE", "MAT", "***"]
    assert text[1].split()[2:] == ["THE", "BAT", "SAT", "***", "THE", "MAT", "NOW"]
    assert text[2].split()[2:] == ["C", "S", "C", "D", "C", "C", "I"]
    assert text[3] == "u1 #csid 4 1 1 1"
    # Columns: each word starts at the same offset in the ref, hyp and op rows.
    starts = [[i for i in range(len(row)) if row[i] != " " and row[i - 1] == " "][2:] for row in text[:3]]
    assert starts[0] == starts[1] == starts[2]


def test_missing_and_extra_hypotheses():
    with pytest.raises(InputError, match="1 utterances have no hypothesis.*u3"):
        compute_wer(REFS, HYPS, missing="error")
    with pytest.raises(InputError, match="1 hypotheses have no reference.*u9"):
        compute_wer(REFS, {**HYPS, "u9": "X"})


def test_lm_weight_is_chosen_on_dev_and_applied_to_test(tmp_path: Path):
    dev_refs = {"d1": "A B C D", "d2": "E F"}
    dev_hyps = {
        "8": {"d1": "A B C", "d2": "E F G"},  # 1 del + 1 ins = 2
        "10": {"d1": "A B C D", "d2": "E X"},  # 1 sub = 1  <- best
        "12": {"d1": "A B C D", "d2": "E"},  # 1 del = 1, tie with 10: the smaller weight wins
    }
    best, results = select_lm_weight(dev_refs, dev_hyps)
    assert best == "10"
    assert {w: r.errors for w, r in results.items()} == {"8": 2, "10": 1, "12": 1}
    test_refs = {"t1": "P Q R"}
    test_hyps = {"8": {"t1": "P Q R"}, "10": {"t1": "P R"}, "12": {"t1": "Z"}}
    summary = score_dev_test(tmp_path, dev_refs, dev_hyps, test_refs, test_hyps)
    # Test is scored at the dev choice (10), even though weight 8 would be better on test.
    assert summary["lmwt"] == "10"
    assert summary["test"]["deletions"] == 1 and summary["test"]["wer"] == pytest.approx(100 / 3, abs=1e-3)
    assert summary["dev"]["wer"] == pytest.approx(100 / 6, abs=1e-3)
    assert (tmp_path / "wer_8").read_text().startswith("%WER 33.33 [ 2 / 6, 1 ins, 1 del, 0 sub ]")
    text = (tmp_path / "wer_summary.txt").read_text().splitlines()
    assert text[0].startswith("dev  lmwt=10") and text[1].startswith("test lmwt=10 (chosen on dev) %WER 33.33")
    md = (tmp_path / "wer_summary.md").read_text()
    assert "| test | 10 | 33.33 | 1 / 3 |" in md
    assert read_json(tmp_path / "wer_summary.json")["dev_wer_by_lmwt"] == {"8": 33.3333, "10": 16.6667, "12": 16.6667}
    assert "t1 op  C D   C\n" in (tmp_path / "per_utt_test.txt").read_text()



def test_lm_weight_ties_go_to_the_numerically_smallest_weight_whatever_the_order():
    refs = {"d1": "A B C D"}
    # Every weight makes one error; the largest comes first and "10" < "9" as strings: only a numeric
    # tie-break picks 9.
    hyps = {"12": {"d1": "A B C"}, "10": {"d1": "A B X D"}, "9": {"d1": "A B C D E"}, "11": {"d1": "B C D"}}
    best, results = select_lm_weight(refs, hyps)
    assert {w: r.errors for w, r in results.items()} == {"12": 1, "10": 1, "9": 1, "11": 1}
    assert best == "9"
    assert select_lm_weight(refs, {"12": hyps["12"], "11": {"d1": "A B C D"}, "10": hyps["10"]})[0] == "11"

def test_score_cli_single_file_and_dev_test_selection(tmp_path: Path, capsys):
    from asr_kd.bin.score import main

    ref = tmp_path / "ref.txt"
    ref.write_text("".join(f"{u} {t}\n" for u, t in REFS.items()))
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("".join(f"{u} {t}\n" for u, t in HYPS.items()))
    assert main(["--ref", str(ref), "--hyp", str(hyp), "--out-dir", str(tmp_path / "one")]) == 0
    assert "%WER 50.00 [ 5 / 10, 1 ins, 3 del, 1 sub ]" in capsys.readouterr().out
    assert read_json(tmp_path / "one" / "wer.json")["errors"] == 5
    assert main(["--ref", str(ref), "--hyp", str(hyp), "--strict"]) == 2
    assert "no hypothesis" in capsys.readouterr().err.strip().splitlines()[-1]

    for part, hyps in (("dev", {"1": "A DOG", "2": "A DOG DOG"}), ("test", {"1": "A", "2": "A DOG"})):
        (tmp_path / part / "scoring").mkdir(parents=True)
        (tmp_path / f"{part}_ref.txt").write_text("x A DOG\n")
        for lmwt, text in hyps.items():
            (tmp_path / part / "scoring" / f"{lmwt}.txt").write_text(f"x {text}\n")
    rc = main(["--ref", str(tmp_path / "dev_ref.txt"), "--hyp", str(tmp_path / "dev"),
               "--test-ref", str(tmp_path / "test_ref.txt"), "--test-hyp", str(tmp_path / "test"),
               "--out-dir", str(tmp_path / "sel")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "test lmwt=1 (chosen on dev) %WER 50.00 [ 1 / 2, 0 ins, 1 del, 0 sub ]" in out


def test_read_transcripts_rejects_duplicate_ids(tmp_path: Path):
    path = tmp_path / "text"
    path.write_text("u1 A B\n\nu2 C\nu1 D\n")
    with pytest.raises(InputError, match=r"text:4: utterance 'u1' appears twice"):
        read_transcripts(path)
