"""glue.py: task readers on the real files and on small files of each layout, metrics by hand,
submissions; then finetune.py and the ablation end to end on the tiny checkpoint."""

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import finetune as ft
import glue
from data import DEFAULT_DATA_ROOT
from glue import Example, FormatError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# -----------------------------------------------------------------------------
# The real files, where this machine has them (rows as /work/shared/data/README.md counts them)

ROWS = {"CoLA": (8551, 1043), "SST-2": (67349, 872), "MRPC": (3668, 408), "STS-B": (5749, 1500),
        "RTE": (2490, 277), "WNLI": (635, 71), "CB": (250, 56), "WiC": (5428, 638)}
real_data = pytest.mark.skipif(not (DATA / "glue").is_dir(),
                               reason=f"the real GLUE/SuperGLUE files are not at {DATA}")


@real_data
@pytest.mark.parametrize("name", ROWS)
@pytest.mark.parametrize("split", ["train", "dev"])
def test_real_files(name, split):
    task = glue.TASKS[name]
    examples = glue.read_examples(name, glue.task_folder(name, DATA), split)
    assert len(examples) == ROWS[name][split == "dev"]
    assert all(e.text_a.strip() and (e.text_b is None) == (task.columns[1] is None) for e in examples)
    assert all(e.text_b.strip() for e in examples if e.text_b is not None)
    assert len({e.idx for e in examples}) == len(examples)
    labels = [e.label for e in examples]
    if task.labels is None:
        assert all(isinstance(y, float) and 0 <= y <= 5 for y in labels) and len(set(labels)) > 10
    else:
        assert set(labels) == set(range(len(task.labels)))  # every class occurs, no other value


@real_data
def test_real_mrpc_drops_the_byte_order_mark():
    assert (DATA / "glue/MRPC/train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")  # the premise of the test
    first = glue.read_examples("MRPC", DATA / "glue/MRPC", "train")[0]
    assert not first.text_a.startswith("\ufeff") and first.text_a[0].isalpha() and first.label in (0, 1)


@real_data
@pytest.mark.parametrize("split, file", [("train", "train.jsonl"), ("dev", "val.jsonl")])
def test_real_wic_marks_the_word(split, file):
    rows = [json.loads(line) for line in (DATA / "superglue/WiC" / file).read_text().splitlines()]
    examples = glue.read_examples("WiC", DATA / "superglue/WiC", split)
    unmarked = 0
    for e, row in zip(examples, rows, strict=True):
        assert e.idx == str(row["idx"]) and e.label == int(row["label"])
        if e.text_a.startswith(row["word"] + ": "):  # the fallback: the span did not point at the word
            unmarked += 1
            continue
        for text, i in ((e.text_a, "1"), (e.text_b, "2")):
            start, end = row[f"start{i}"], row[f"end{i}"]
            sentence = row[f"sentence{i}"]
            assert text == sentence[:start] + '"' + sentence[start:end] + '"' + sentence[end:]
    assert unmarked == (1 if split == "train" else 0)  # train idx 1868: "round" marked for "call"


# -----------------------------------------------------------------------------
# Small files of each layout, written here


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(text.encode("utf-8"))
    return folder


def tsv(*rows):
    return "".join("\t".join(r) + "\n" for r in rows)


@pytest.fixture
def glue_dir(tmp_path):
    return tmp_path / "glue"


def test_glue_layouts(glue_dir):
    # CoLA: no header, a quote that the csv module would take as the start of a quoted field
    write(glue_dir / "CoLA", "train.tsv", tsv(("ab12", "1", "", '"Pigs fly," he said.'),
                                          ("ab12", "0", "*", "Cat the sat.")))
    assert glue.read_examples("CoLA", glue_dir / "CoLA") == [Example('"Pigs fly," he said.', None, 1, "0"),
                                                             Example("Cat the sat.", None, 0, "1")]
    # SST-2: header; trailing spaces go
    write(glue_dir / "SST-2", "dev.tsv", tsv(("sentence", "label"), ("a warm , funny film ", "1")))
    assert glue.read_examples("SST-2", glue_dir / "SST-2", "dev") == [
        Example("a warm , funny film", None, 1, "0")]
    # Windows line ends, an empty line
    write(glue_dir / "SST-2", "train.tsv", "sentence\tlabel\r\nflat\t0\r\n\r\ngood fun\t1\r\n")
    assert glue.read_examples("SST-2", glue_dir / "SST-2") == [Example("flat", None, 0, "0"),
                                                               Example("good fun", None, 1, "1")]
    # MRPC: starts with a byte-order mark, label column "Quality" first
    table = tsv(("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                ("0", "11", "12", "The vote was close .", "It rained ."))
    write(glue_dir / "MRPC", "train.tsv", "\ufeff" + table)
    assert glue.read_examples("MRPC", glue_dir / "MRPC") == [
        Example("The vote was close .", "It rained .", 0, "0")]
    # STS-B: columns found by name among ten
    head = ("index", "genre", "filename", "year", "old_index",
            "source1", "source2", "sentence1", "sentence2", "score")
    row = ("7", "g", "f", "y", "o", "s", "s", "A dog runs.", "A dog is running.", "4.250")
    write(glue_dir / "STS-B", "dev.tsv", tsv(head, row))
    assert glue.read_examples("STS-B", glue_dir / "STS-B", "dev") == [
        Example("A dog runs.", "A dog is running.", 4.25, "7")]
    # RTE / WNLI: index, sentence1, sentence2, label
    write(glue_dir / "RTE", "train.tsv", tsv(("index", "sentence1", "sentence2", "label"),
                                         ("3", "Ann left.", "Ann stayed.", "not_entailment")))
    assert glue.read_examples("RTE", glue_dir / "RTE")[0] == Example("Ann left.", "Ann stayed.", 1, "3")
    write(glue_dir / "WNLI", "train.tsv", tsv(("index", "sentence1", "sentence2", "label"),
                                          ("0", "Bo hid it.", "It was hid.", "1")))
    assert glue.read_examples("WNLI", glue_dir / "WNLI")[0].label == 1


def test_big_glue_layouts(glue_dir):
    # MNLI: parses before the plain sentences, five annotator labels in dev, gold_label last
    head = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
            "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "label2", "gold_label")
    row = ("0", "1", "1e", "fiction", "( x )", "( y )",
           "(ROOT x)", "(ROOT y)", "Sam cooks.", "Sam eats.", "neutral", "neutral")
    write(glue_dir / "MNLI", "dev_matched.tsv", tsv(head, row + ("neutral",)))
    write(glue_dir / "MNLI", "dev_mismatched.tsv", tsv(head, row + ("contradiction",)))
    assert glue.read_examples("MNLI", glue_dir / "MNLI", "dev") == [
        Example("Sam cooks.", "Sam eats.", 1, "0")]
    assert glue.read_examples("MNLI-mm", glue_dir / "MNLI", "dev")[0].label == 2
    assert glue.task_folder("MNLI-mm", "root") == glue.task_folder("MNLI", "root") == Path("root/glue/MNLI")
    # QNLI: question first
    write(glue_dir / "QNLI", "dev.tsv", tsv(("index", "question", "sentence", "label"),
                                        ("5", "Who won?", "Kim won.", "entailment")))
    assert glue.read_examples("QNLI", glue_dir / "QNLI", "dev") == [Example("Who won?", "Kim won.", 0, "5")]
    # QQP: id, qid1, qid2, question1, question2, is_duplicate
    write(glue_dir / "QQP", "train.tsv", tsv(("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
                                         ("9", "1", "2", "How to swim?", "How do I swim?", "1")))
    assert glue.read_examples("QQP", glue_dir / "QQP") == [Example("How to swim?", "How do I swim?", 1, "9")]


def test_glue_test_split_has_no_labels(glue_dir):
    write(glue_dir / "CoLA", "test.tsv", tsv(("index", "sentence"),
                                         ("0", "Birds sing."), ("1", "Sing birds the.")))
    assert glue.read_examples("CoLA", glue_dir / "CoLA", "test") == [
        Example("Birds sing.", None, None, "0"), Example("Sing birds the.", None, None, "1")]
    write(glue_dir / "MRPC", "test.tsv", "\ufeff" + tsv(("index", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                                                    ("4", "1", "2", "Up .", "Down .")))
    assert glue.read_examples("MRPC", glue_dir / "MRPC", "test") == [Example("Up .", "Down .", None, "4")]
    write(glue_dir / "QQP", "test.tsv", tsv(("id", "question1", "question2"), ("12", "Why?", "Why not?")))
    assert glue.read_examples("QQP", glue_dir / "QQP", "test") == [Example("Why?", "Why not?", None, "12")]
    write(glue_dir / "MNLI", "test_mismatched.tsv", tsv(("index", "sentence1", "sentence2"),
                                                    ("8", "Hi.", "Bye.")))
    assert glue.read_examples("MNLI-mm", glue_dir / "MNLI", "test") == [Example("Hi.", "Bye.", None, "8")]


def jsonl(*rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_superglue_layouts(tmp_path):
    cb_row = {"premise": "Jo thinks it rains.", "hypothesis": "it rains", "label": "neutral", "idx": 3}
    cb = write(tmp_path / "CB", "val.jsonl", jsonl(cb_row))
    assert glue.read_examples("CB", cb, "dev") == [Example("Jo thinks it rains.", "it rains", 2, "3")]
    write(cb, "test.jsonl", jsonl({"premise": "P.", "hypothesis": "h", "idx": 0}))
    assert glue.read_examples("CB", cb, "test") == [Example("P.", "h", None, "0")]
    wic = {"word": "bank", "sentence1": "The bank closed.", "sentence2": "Banks of rivers flood.",
           "start1": 4, "end1": 8, "start2": 0, "end2": 5, "label": True, "idx": 0}
    write(tmp_path / "WiC", "train.jsonl", jsonl(wic, dict(wic, start2=9, end2=15, label=False, idx=1),
                                                 dict(wic, end1=40, idx=2)))
    ok, wrong_word, out_of_range = glue.read_examples("WiC", tmp_path / "WiC")
    assert ok == Example('The "bank" closed.', '"Banks" of rivers flood.', 1, "0")
    # span on "rivers", "Banks" is there
    assert wrong_word == Example('bank: The "bank" closed.', "Banks of rivers flood.", 0, "1")
    assert out_of_range.text_a == "bank: The bank closed."


def test_irregular_form_is_marked(tmp_path):
    # "got" must not count as a form of "go"
    row = {"word": "go", "sentence1": "She went home and got tea.", "sentence2": "Go!",
           "start1": 4, "end1": 8, "start2": 0, "end2": 2, "label": "true", "idx": 0}
    write(tmp_path, "val.jsonl", jsonl(dict(row, label=True)))
    assert glue.read_examples("WiC", tmp_path, "dev")[0].text_a == 'She "went" home and got tea.'


# -----------------------------------------------------------------------------
# Bad files: an error that names the file and line


def error(task, folder, split="train"):
    with pytest.raises((FormatError, FileNotFoundError)) as info:
        glue.read_examples(task, folder, split)
    return str(info.value)


def test_errors(tmp_path):
    write(tmp_path / "CoLA", "train.tsv", tsv(("s", "1", "", "Fine."), ("s", "0", "Broken row.")))
    assert error("CoLA", tmp_path / "CoLA").endswith(
        "CoLA/train.tsv:2: expected 4 tab-separated columns (source, label, mark, sentence), found 3")
    write(tmp_path / "RTE", "train.tsv", tsv(("index", "sentence1", "label"), ("0", "A.", "entailment")))
    assert "RTE/train.tsv:1: the header lacks column sentence2" in error("RTE", tmp_path / "RTE")
    write(tmp_path / "RTE", "dev.tsv", tsv(("index", "sentence1", "sentence2", "label"),
                                           ("0", "A.", "B.", "maybe")))
    assert ("RTE/dev.tsv:2: label 'maybe' is not one of RTE's labels: entailment, not_entailment"
            in error("RTE", tmp_path / "RTE", "dev"))
    write(tmp_path / "STS-B", "train.tsv", tsv(("sentence1", "sentence2", "score"),
                                               ("A.", "B.", "1.0"), ("A.", "B.", "high")))
    assert "STS-B/train.tsv:3: score 'high' is not a number" in error("STS-B", tmp_path / "STS-B")
    write(tmp_path / "SST-2", "train.tsv", "")
    assert "SST-2/train.tsv: no examples" in error("SST-2", tmp_path / "SST-2")
    write(tmp_path / "SST-2", "dev.tsv", "sentence\tlabel\n")
    assert ("SST-2/dev.tsv: no examples (the file is empty or only a header)"
            in error("SST-2", tmp_path / "SST-2", "dev"))
    message = error("SST-2", tmp_path / "SST-2", "test")
    assert "no file test.tsv in" in message and str(tmp_path / "SST-2") in message
    assert "the folder does not exist" in error("QNLI", tmp_path / "QNLI")
    valid_line = jsonl({"premise": "P.", "hypothesis": "h", "label": "entailment", "idx": 0})
    write(tmp_path / "CB", "train.jsonl", valid_line + '{"premise": "P.",\n')
    assert "CB/train.jsonl:2: invalid JSON" in error("CB", tmp_path / "CB")
    write(tmp_path / "CB", "val.jsonl", jsonl({"premise": "P.", "label": "entailment", "idx": 0}))
    assert "CB/val.jsonl:1: missing field hypothesis" in error("CB", tmp_path / "CB", "dev")
    write(tmp_path / "WiC", "train.jsonl", jsonl({"word": "w", "sentence1": "w", "sentence2": "w",
                                                  "start1": 0, "end1": 1, "start2": 0, "end2": 1,
                                                  "label": 1, "idx": 0}))
    assert ("WiC/train.jsonl:1: label '1' is not one of WiC's labels: false, true"
            in error("WiC", tmp_path / "WiC"))
    (tmp_path / "WNLI").mkdir()
    (tmp_path / "WNLI" / "train.tsv").write_bytes(b"index\tsentence1\tsentence2\tlabel\n0\t\xe9t\xe9\tx\t1\n")
    assert "WNLI/train.tsv: not UTF-8" in error("WNLI", tmp_path / "WNLI")
    with pytest.raises(ValueError, match="unknown task 'MNLI-x'"):
        glue.read_examples("MNLI-x", tmp_path)
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        glue.read_examples("CB", tmp_path / "CB", "validation")


def test_task_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("SE_DATA", str(tmp_path))
    assert glue.task_folder("WiC") == tmp_path / "superglue" / "WiC"
    assert glue.task_folder("STS-B", "elsewhere") == Path("elsewhere/glue/STS-B")
    monkeypatch.delenv("SE_DATA")
    assert glue.task_folder("CoLA") == DEFAULT_DATA_ROOT / "glue" / "CoLA"


# -----------------------------------------------------------------------------
# Metrics, against arithmetic done by hand


def test_accuracy_and_f1():
    pred, gold = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    assert glue.accuracy(pred, gold) == 3 / 5
    # tp 2 (rows 0, 4), fp 1 (row 1), fn 1 (row 3)
    assert glue.f1(pred, gold) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert glue.f1([0, 0], [0, 0]) == 0.0 and glue.f1([1, 0], [0, 1]) == 0.0  # no true positive
    assert glue.accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        glue.accuracy([1, 0], [1])


def test_macro_f1():
    pred, gold = [0, 0, 1, 2, 2, 1], [0, 1, 1, 2, 0, 1]
    # class 0: tp 1, fp 1, fn 1 -> 2/4; class 1: tp 2, fp 0, fn 1 -> 4/5; class 2: tp 1, fp 1, fn 0 -> 2/3
    assert glue.macro_f1(pred, gold, 3) == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert glue.macro_f1([0, 0], [0, 0], 3) == pytest.approx(1 / 3)  # the two absent classes count 0


def test_mcc():
    pred, gold = [1, 1, 1, 0, 0, 0, 1, 0], [1, 1, 0, 0, 0, 1, 1, 1]
    # tp 3, tn 2, fp 1, fn 2: (3*2 - 1*2) / sqrt((3+1)(3+2)(2+1)(2+2)) = 4 / sqrt(240)
    assert glue.mcc(pred, gold) == pytest.approx(4 / math.sqrt(240))
    flipped = [1 - g for g in gold]
    assert glue.mcc(gold, gold) == pytest.approx(1.0) and glue.mcc(flipped, gold) == pytest.approx(-1.0)
    assert glue.mcc([1] * 8, gold) == 0.0 and glue.mcc(pred, [0] * 8) == 0.0  # constant prediction or gold
    # three classes: n 4, correct 3, predicted counts (2, 1, 1), gold counts (1, 2, 1):
    # (4*3 - (2*1 + 1*2 + 1*1)) / sqrt((16 - (4+1+1)) (16 - (1+4+1))) = 7 / 10
    assert glue.mcc([0, 0, 1, 2], [0, 1, 1, 2]) == pytest.approx(0.7)


def test_pearson_and_spearman():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0]
    # deviations from the means (2.5): x (-1.5, -.5, .5, 1.5), y (-.5, -1.5, 1.5, .5)
    # sum xy = .75 + .75 + .75 + .75 = 3; sum x^2 = sum y^2 = 2.25 + .25 + .25 + 2.25 = 5  ->  r = 3 / 5
    assert glue.pearson(x, y) == pytest.approx(0.6)
    assert glue.spearman(x, y) == pytest.approx(0.6)  # already ranks
    assert glue.pearson([0.1] * 10, list(range(10))) == 0.0 and glue.pearson(x, [2.0] * 4) == 0.0
    assert glue.spearman([3, 3, 3], [1, 2, 3]) == 0.0
    # ties: ranks of (10, 20, 20, 30) are (1, 2.5, 2.5, 4); against (1, 2, 3, 4): deviations (-1.5, 0, 0, 1.5)
    # and (-1.5, -.5, .5, 1.5): sum xy = 4.5, sum x^2 = 4.5, sum y^2 = 5  ->  4.5 / sqrt(4.5 * 5)
    assert glue.spearman([10, 20, 20, 30], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    # ranks ignore a monotone transform; pearson does not
    assert glue.spearman(np.exp(x), y) == pytest.approx(0.6)
    assert glue.pearson(np.exp(x), y) != pytest.approx(0.6)


def test_scores():
    assert glue.scores("CoLA", [1, 0], [1, 0]) == {"mcc": pytest.approx(1.0)}
    assert glue.scores("MRPC", [1, 1, 0, 0], [1, 0, 0, 0]) == {"f1": pytest.approx(2 / 3), "accuracy": 0.75}
    assert list(glue.scores("QQP", [1], [1])) == ["f1", "accuracy"] and glue.TASKS["QQP"].metric == "f1"
    assert glue.scores("STS-B", [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0]) == {
        "pearson": pytest.approx(0.6), "spearman": pytest.approx(0.6)}
    assert glue.scores("CB", [0, 1, 2, 2], [0, 1, 2, 1]) == {
        "macro_f1": pytest.approx((1 + 2 / 3 + 2 / 3) / 3), "accuracy": 0.75}
    for name in ("SST-2", "RTE", "WNLI", "QNLI", "MNLI", "MNLI-mm", "WiC"):
        assert glue.scores(name, [0, 1, 1], [0, 1, 0]) == {"accuracy": pytest.approx(2 / 3)}
    assert all(isinstance(v, float) for v in glue.scores("CB", np.array([0, 1]), np.array([0, 0])).values())
    with pytest.raises(ValueError, match="gold labels missing"):
        glue.scores("RTE", [0], [None])


# -----------------------------------------------------------------------------
# Submission files


def test_submission_rows():
    two = [Example("a", "b", None, "0"), Example("c", "d", None, "1")]
    assert glue.submission_rows("RTE", two, [1, 0]) == (
        "RTE.tsv", "index\tprediction\n0\tnot_entailment\n1\tentailment\n")
    assert glue.submission_rows("CoLA", two, np.array([1, 0])) == ("CoLA.tsv",
                                                                   "index\tprediction\n0\t1\n1\t0\n")
    assert glue.submission_rows("MNLI", two, [2, 1]) == ("MNLI-m.tsv",
                                                         "index\tprediction\n0\tcontradiction\n1\tneutral\n")
    assert glue.submission_rows("STS-B", two, [5.7, -0.2]) == ("STS-B.tsv",
                                                               "index\tprediction\n0\t5.000\n1\t0.000\n")
    name, text = glue.submission_rows("WiC", two, [1, 0])
    rows = [json.loads(line) for line in text.splitlines()]
    assert name == "WiC.jsonl" and rows == [{"idx": 0, "label": "true"}, {"idx": 1, "label": "false"}]
    assert glue.submission_rows("CB", two[:1], [2])[1] == '{"idx": 0, "label": "neutral"}\n'
    with pytest.raises(ValueError, match="not a class index"):
        glue.submission_rows("RTE", two, [0, 2])
    with pytest.raises(ValueError, match="2 predictions for 1 examples"):
        glue.submission_rows("RTE", two[:1], [0, 1])


# -----------------------------------------------------------------------------
# The training loop and the ablation, on the tiny checkpoint


def write_learnable_tasks(root, n=64):
    """A CoLA-layout task the tiny vocabulary can learn (label: is the animal a cat?) and a CB-layout one."""
    rng = np.random.default_rng(0)
    rows, cb = [], []
    for i in range(n):
        animal, colour = rng.choice(["cat", "dog"]), rng.choice(["red", "old", "big"])
        rows.append(f"src\t{int(animal == 'cat')}\t\tthe {colour} {animal} sat near the hill .")
        label = ["entailment", "contradiction", "neutral"][i % 3]
        cb.append(json.dumps({"premise": f"the {colour} {animal} ran .", "hypothesis": "a dog ran .",
                              "label": label, "idx": i}))
    for split in ("train", "dev"):
        (root / "glue" / "CoLA").mkdir(parents=True, exist_ok=True)
        (root / "glue" / "CoLA" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
        (root / "superglue" / "CB").mkdir(parents=True, exist_ok=True)
        cb_file = f"{'val' if split == 'dev' else split}.jsonl"
        (root / "superglue" / "CB" / cb_file).write_text("\n".join(cb) + "\n")
    return root


def test_finetuning_learns_a_tiny_task(tmp_path, tiny_checkpoint):
    root = write_learnable_tasks(tmp_path / "data")
    (root / "glue" / "CoLA" / "test.tsv").write_text("index\tsentence\n0\tthe cat sat .\n1\tthe dog sat .\n")
    reports = ft.main(["--model", str(tiny_checkpoint), "--task", "CoLA", "--data-root", str(root),
                       "--seeds", "1", "2", "--epochs", "6", "--batch-size", "8", "--lr", "1e-2",
                       "--device", "cpu", "--quiet",
                       "--out", str(tmp_path / "report.json"), "--predict", str(tmp_path / "predictions")])
    cola = reports[0]
    # dev = train here: chance is 0.5 accuracy and 0 Matthews correlation
    assert cola["mean"]["mcc"] > 0.5 and len(cola["runs"]) == 2
    assert [r["seed"] for r in cola["runs"]] == [1, 2] and len(cola["runs"][0]["epochs"]) == 6
    assert json.loads((tmp_path / "report.json").read_text())[0]["mean"] == cola["mean"]
    assert (tmp_path / "predictions" / "CoLA.tsv").read_text().splitlines()[0] == "index\tprediction"


def test_ablation_small_preset_end_to_end(tmp_path, tiny_checkpoint, tiny_corpus):
    from experiments import ablation

    root = write_learnable_tasks(tmp_path / "data", n=24)
    argv = ["--preset", "small", "--model", str(tiny_checkpoint), "--corpus", str(tiny_corpus),
            "--data-root", str(root), "--tasks", "CoLA", "CB", "--steps", "2", "--warmup", "1",
            "--block-length", "32", "--batch-size", "4", "--ft-epochs", "1", "--max-train", "16",
            "--device", "cpu", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "ablation"), "--quiet"]
    text = ablation.main(argv)
    out = tmp_path / "ablation"
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| model | CoLA | CB | average | pretraining tokens")
    # start + (a)-(d): 2 tasks + average
    assert len(rows) == 1 + 5 and all(r.count(" ± ") == 3 for r in rows[1:])
    assert "smoke test" in text and (out / "mlm-loss.png").stat().st_size > 1000
    pretrained = sorted(p.parent.name for p in (out / "pretrain").glob("*/summary.json"))
    assert pretrained == ["informative", "random", "se", "tls"]
    assert len(list((out / "finetune").glob("*/*/report.json"))) == 5 * 2
    # Every stage is stored: a second invocation reuses them all and writes the same table.
    before = (out / "results.json").read_text()
    assert ablation.main(argv).split("![")[0] == text.split("![")[0]
    assert json.loads((out / "results.json").read_text())["finetuning"] == json.loads(before)["finetuning"]


@pytest.mark.filterwarnings("ignore:.*the checkpoint has no MLM head")  # by design: the warm-up makes one
def test_ablation_study_end_to_end(tmp_path, tiny_checkpoint, tiny_corpus, tiny_blimp):
    """The study preset in small: a warm-up for a missing MLM head, all five variants, probes along the
    curve, paired differences from (a)."""
    from experiments import ablation
    from safetensors.torch import load_file, save_file

    headless = tmp_path / "headless"  # an encoder without its MLM head, as MiniLM
    shutil.copytree(tiny_checkpoint, headless)
    weights = load_file(headless / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("cls.")}, headless / "model.safetensors")
    root = write_learnable_tasks(tmp_path / "data", n=24)
    shutil.copytree(tiny_blimp / "blimp", root / "blimp")  # and the tiny BLiMP files beside the tasks
    out = tmp_path / "study"
    argv = ["--preset", "study", "--model", str(headless), "--corpus", str(tiny_corpus),
            "--data-root", str(root), "--tasks", "CoLA", "--steps", "2", "--warmup", "1",
            "--head-steps", "3", "--block-length", "32", "--batch-size", "4", "--heldout", "0.1",
            "--eval-blocks", "8", "--blimp-pairs", "3", "--curve-every", "1", "--curve-pairs", "2",
            "--seeds", "1", "2", "--ft-epochs", "1", "--max-train", "16", "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--quiet"]
    text = ablation.main(argv)
    probes = json.loads((out / "results.json").read_text())["probes"]
    assert list(probes) == ["start", "random", "informative", "tls", "se", "authors"]
    start = json.loads((out / "pretrain" / "start" / "summary.json").read_text())
    assert start["checkpoint"].endswith("step-0000003")
    assert [p["step"] for p in probes["se"]] == [1, 2] and len(probes["se"][-1]["blimp"]["correct"]) == 2
    assert [len(c) for c in probes["se"][0]["blimp"]["correct"].values()] == [2, 2]  # the curve's pairs
    assert probes["se"][-1]["random"]["count"] == probes["random"][-1]["random"]["count"]  # the same tokens
    differences = [line for line in text.splitlines() if line.startswith("| (") and line.count("[") == 4]
    assert len(differences) == 4  # (b)-(e) against (a): BLiMP, two MLM losses, downstream, each an interval
    assert (out / "curves.png").stat().st_size > 1000
    # The wall time sums what every stage took, so that a resumed study counts its stopped invocations.
    assert all(p["minutes"] > 0 for ps in probes.values() for p in ps)
    assert re.search(r"\n- wall time: \d+ min in all, the sum of its stages\n", text)


def test_paired_intervals_are_those_of_the_resampled_differences():
    from experiments import stats

    rng = np.random.default_rng(0)
    a = {"accuracy": 0.5, "correct": {"p": [1, 0] * 50}}
    b = {"accuracy": 0.6, "correct": {"p": [1, 0] * 40 + [1, 1] * 10}}  # right on ten more pairs
    point, low, high = stats.paired_blimp(a, b, rng)
    assert point == pytest.approx(10.0) and 0 < low < point < high  # the ten never turn against b
    scores = {"loss": [2.0, 4.0], "count": [1, 2]}
    assert stats.paired_mlm(scores, scores, rng) == (0.0, 0.0, 0.0)
    assert stats.paired_seeds([50, 60, 70], [51, 61, 71], rng) == pytest.approx((1.0, 1.0, 1.0))
    assert stats.cell(1.0, 0.2, 1.8, 2) == "+1.00 [+0.20, +1.80] *"
    assert "*" not in stats.cell(1, -1, 2, 1)


def test_command_line_names_file_and_line_of_bad_input(tmp_path, tiny_checkpoint):
    root = write_learnable_tasks(tmp_path / "data", n=4)
    (root / "glue" / "CoLA" / "train.tsv").write_text("src\t1\t\tthe cat sat .\nsrc\t0\tthe dog sat .\n")
    with pytest.raises(SystemExit, match=r"CoLA/train.tsv:2: expected 4 tab-separated columns"):
        ft.main(["--model", str(tiny_checkpoint), "--task", "CoLA", "--data-root", str(root),
                 "--device", "cpu", "--quiet"])
    with pytest.raises(SystemExit, match=r"error: .*RTE"):
        ft.main(["--model", str(tiny_checkpoint), "--task", "RTE", "--data-root", str(root),
                 "--device", "cpu", "--quiet"])


def test_ablation_refuses_to_mix_settings(tmp_path):
    from experiments import ablation

    args = ablation.parse_args(["--out", str(tmp_path)])
    ablation.check_settings(args)
    ablation.check_settings(ablation.parse_args(["--out", str(tmp_path)]))  # the same settings: continues
    with pytest.raises(SystemExit, match=r"holds an ablation made from other .* \(settings seeds: "
                                         r"\[1, 2, 3\] there, \[1, 2\] now\)"):
        ablation.check_settings(ablation.parse_args(["--out", str(tmp_path), "--seeds", "1", "2"]))
