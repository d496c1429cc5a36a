"""
glue.py -- the GLUE and SuperGLUE tasks: read from their original files, scored by their metrics.

SE claims a better starting point for downstream tasks, so the ablation
fine-tunes every checkpoint (finetune.py) on the same benchmark tasks and
compares what the benchmarks report. This file is the benchmarks' side of
that comparison; it never calls a model:

  1. tasks        what each task is: its labels in the files' own spelling,
                  its metrics (the leaderboard's first one selects models),
                  its columns, and where its files are
  2. reading      each task from its original files, the GLUE download's .tsv
                  and SuperGLUE's .jsonl, as Examples; a file that does not
                  have its task's layout is a FormatError naming file and line
  3. submissions  a test split's predictions in the file the benchmark's
                  server takes
  4. metrics      each task's standard metrics, in numpy, never NaN
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import data

# -----------------------------------------------------------------------------
# 1. Tasks
#
#   TASKS[name]                          a Task: labels, metrics, columns, files
#   task_folder(name, data_root=None)    data_root/glue/<folder> or data_root/superglue/<folder>
#   file_name(name, split)               train.tsv, dev_matched.tsv, val.jsonl, ...
#
# Splits are "train", "dev" (GLUE dev.tsv, SuperGLUE val.jsonl) and "test" (no
# labels). MNLI has two dev and test sets, so two tasks: "MNLI-m"
# (dev_matched.tsv) and "MNLI-mm" (dev_mismatched.tsv), both in the folder
# MNLI; "MNLI" is MNLI-m.

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "glue" (.tsv files) or "superglue" (.jsonl files)
    labels: tuple | None  # label names in the files' own spelling, in index order; None: regression
    metrics: tuple  # the benchmark's metrics for the task, the leaderboard's first one first
    columns: tuple  # (text_a, text_b or None, label): header names (GLUE) or keys (SuperGLUE)
    folder: str = ""  # the folder under data_root/kind, when it is not the task's name
    suffix: str = ""  # MNLI's dev and test file names: dev_matched.tsv, test_mismatched.tsv
    no_header: tuple = ()  # the column names of train/dev files that have no header line (CoLA)
    choices: int = 0  # a multiple-choice task: the candidates per example, each scored by the head (COPA)

    @property
    def outputs(self) -> int:
        """A classifier's outputs for the task: one per class; one for a regression, and for each choice
        of a multiple-choice task (scored alone)."""
        return 1 if self.labels is None or self.choices else len(self.labels)

    @property
    def metric(self) -> str:
        """The one that selects models: the first the leaderboard shows."""
        return self.metrics[0]


BINARY, NLI2, NLI3 = ("0", "1"), ("entailment", "not_entailment"), ("entailment", "neutral", "contradiction")
PAIR = ("sentence1", "sentence2", "label")
TASKS = {t.name: t for t in [
    Task("CoLA", "glue", BINARY, ("mcc",), ("sentence", None, "label"),
         no_header=("source", "label", "mark", "sentence")),
    Task("SST-2", "glue", BINARY, ("accuracy",), ("sentence", None, "label")),
    Task("MRPC", "glue", BINARY, ("f1", "accuracy"), ("#1 String", "#2 String", "Quality")),
    Task("STS-B", "glue", None, ("pearson", "spearman"), ("sentence1", "sentence2", "score")),
    Task("RTE", "glue", NLI2, ("accuracy",), PAIR),
    Task("WNLI", "glue", BINARY, ("accuracy",), PAIR),
    Task("MNLI-m", "glue", NLI3, ("accuracy",), ("sentence1", "sentence2", "gold_label"), "MNLI", "_matched"),
    Task("MNLI-mm", "glue", NLI3, ("accuracy",), ("sentence1", "sentence2", "gold_label"),
         "MNLI", "_mismatched"),
    Task("QNLI", "glue", NLI2, ("accuracy",), ("question", "sentence", "label")),
    Task("QQP", "glue", BINARY, ("f1", "accuracy"), ("question1", "question2", "is_duplicate")),
    Task("CB", "superglue", ("entailment", "contradiction", "neutral"), ("macro_f1", "accuracy"),
         ("premise", "hypothesis", "label")),
    Task("WiC", "superglue", ("false", "true"), ("accuracy",), PAIR),
    Task("COPA", "superglue", ("0", "1"), ("accuracy",), ("premise", None, "label"), choices=2),
    Task("WSC", "superglue", ("false", "true"), ("accuracy",), ("text", None, "label")),
]}
TASKS["MNLI"] = TASKS["MNLI-m"]


def get_task(task) -> Task:
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return TASKS[task]


def task_folder(name, data_root=None) -> Path:
    task = get_task(name)
    return data.find_data_root(data_root) / task.kind / (task.folder or task.name)


def file_name(task, split) -> str:
    task = get_task(task)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if task.kind == "superglue":
        return {"train": "train", "dev": "val", "test": "test"}[split] + ".jsonl"
    return split + ("" if split == "train" else task.suffix) + ".tsv"


# -----------------------------------------------------------------------------
# 2. Reading a task's files
#
#   read_examples(name, folder, split)   [Example(text_a, text_b, label, idx), ...]
#
# Files are read as the benchmarks wrote them: UTF-8 with the byte-order mark of
# the official MRPC files dropped; GLUE's lines split on tabs with no quoting
# (MRPC and STS-B sentences hold stray quotes), SuperGLUE's as JSON lines
# (data.json_rows, the project's one reader of them). A test split has no
# labels: label None, idx kept for the submission file.


class FormatError(ValueError):
    """A task file that does not have its task's layout; the message names the file and line."""


@dataclass
class Example:
    text_a: str
    text_b: str | None
    label: int | float | None  # class index, regression target, or None on the test split
    idx: str  # the row's id, written back into a submission file
    choices: tuple = ()  # a multiple-choice task's candidates (COPA): each is scored as (text_a, choice)


def read_examples(task_name, folder=None, split="train") -> list[Example]:
    task = get_task(task_name)
    folder = Path(folder) if folder is not None else task_folder(task)
    path = folder / file_name(task, split)
    if not path.is_file():
        where = "" if folder.is_dir() else " (the folder does not exist)"
        raise FileNotFoundError(f"{task.name} {split} split: no file {path.name} in {folder}{where}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: drop the byte-order mark MRPC starts with
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not UTF-8 (byte {e.start})") from None
    # split("\n"), not splitlines(): that also splits on characters such as \x1c
    # and \u2028 that can sit inside a sentence.
    lines = text.split("\n")
    examples = (_read_jsonl if task.kind == "superglue" else _read_tsv)(task, path, lines, split)
    if not examples:
        or_header = "" if task.kind == "superglue" else " or only a header"
        raise FormatError(f"{path}: no examples (the file is empty{or_header})")
    return examples


def subsample(examples, n, seed=0):
    """At most n examples, the same ones for every seed and every model (a fixed draw)."""
    if not n or n >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), n, replace=False))
    return [examples[i] for i in keep]


def _label(task, value: str, where: str):
    if task.labels is None:  # STS-B, the one regression task: a similarity from 0 to 5
        try:
            score = float(value)
        except ValueError:
            score = float("nan")
        if not 0 <= score <= 5:
            raise FormatError(f"{where}: score {value!r} is not a number from 0 to 5")
        return score
    if value not in task.labels:
        raise FormatError(f"{where}: label {value!r} is not one of {task.name}'s labels: "
                          f"{', '.join(task.labels)}")
    return task.labels.index(value)


def _read_tsv(task, path, lines, split) -> list[Example]:
    # Empty lines (as after the last row) carry nothing; "\r" ends Windows lines.
    lines = [(n, line.rstrip("\r")) for n, line in enumerate(lines, 1) if line not in ("", "\r")]
    a, b, y = task.columns
    if task.no_header and split != "test":  # CoLA's test.tsv does have a header: index, sentence
        names, rows = task.no_header, lines
    elif not lines:
        return []
    else:
        names, rows = tuple(lines[0][1].split("\t")), lines[1:]
        need = [c for c in (a, b, None if split == "test" else y) if c is not None]
        if missing := [c for c in need if c not in names]:
            raise FormatError(f"{path}:1: the header lacks column {', '.join(missing)}; "
                              f"it has {', '.join(names)}")
    col = {c: names.index(c) for c in names}
    idx = next((col[c] for c in ("index", "id") if c in col), None)  # else the row's number from 0
    examples, seen = [], {}
    for k, (n, line) in enumerate(rows):
        f = line.split("\t")
        if len(f) != len(names):  # too few, or a tab inside a text: either way the columns would shift
            raise FormatError(f"{path}:{n}: expected {len(names)} tab-separated columns "
                              f"({', '.join(names)}), found {len(f)}")
        label = None if split == "test" else _label(task, f[col[y]], f"{path}:{n}")
        if split == "test" and idx is not None:
            _test_idx(f[idx], f"{path}:{n}", seen)
        # strip: SST-2 ends every sentence with a space
        examples.append(Example(f[col[a]].strip(), f[col[b]].strip() if b else None, label,
                                str(k) if idx is None else f[idx]))
    return examples


# The fields a task's rows carry beyond its columns, and which of them are texts.
MORE_FIELDS = {"WiC": ["word", "start1", "end1", "start2", "end2"],
               "COPA": ["choice1", "choice2", "question"],
               "WSC": ["target"]}
MORE_TEXTS = {"WiC": ["word"], "COPA": ["choice1", "choice2"]}
COPA_CUES = {"cause": "What was the cause?", "effect": "What happened as a result?"}


def _read_jsonl(task, path, lines, split) -> list[Example]:
    a, b, y = task.columns
    texts = [k for k in (a, b) if k] + MORE_TEXTS.get(task.name, [])
    need = texts + ["idx"] + ([] if split == "test" else [y]) + MORE_FIELDS.get(task.name, [])
    try:  # a line that is not a JSON object: a FormatError like every other fault of a task file
        rows = list(data.json_rows(path, lines))
    except ValueError as e:
        raise FormatError(str(e)) from None
    examples, seen = [], {}
    for where, row in rows:
        if missing := [k for k in dict.fromkeys(need) if k not in row]:
            raise FormatError(f"{where}: missing field {', '.join(missing)}")
        if split == "test":
            _test_idx(row["idx"], where, seen)
        if not_text := [k for k in texts if not isinstance(row[k], str)]:
            raise FormatError(f"{where}: field {', '.join(not_text)} is {json.dumps(row[not_text[0]])}, "
                              "expected a string")
        # WiC's labels are JSON true/false: compare their JSON spelling, since True == 1 in Python
        label = (None if split == "test"
                 else _label(task, row[y] if isinstance(row[y], str) else json.dumps(row[y]), where))
        choices = ()
        if task.name == "WiC":
            text_a, text_b = _mark_word(row)
        elif task.name == "COPA":  # the premise with its question, then each choice: which follows?
            if row["question"] not in COPA_CUES:
                raise FormatError(f"{where}: question {row['question']!r} is not one of cause, effect")
            text_a, text_b = f"{row[a]} {COPA_CUES[row['question']]}", None
            choices = (row["choice1"], row["choice2"])
        elif task.name == "WSC":
            text_a, text_b = _mark_spans(row, where), None
        else:
            text_a, text_b = row[a], row[b] if b else None
        examples.append(Example(text_a, text_b, label, str(row["idx"]), choices))
    return examples


def _test_idx(value, where, seen):
    """A test row's idx names its row of the submission file, so it is checked as the file is read,
    before any training: a whole number (a JSON integer, or digits in a .tsv), given once. `seen`:
    {idx: line} of the rows before."""
    whole = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if not (whole or isinstance(value, str) and re.fullmatch(r"[0-9]+", value)):
        shown = repr(value) if isinstance(value, str) else json.dumps(value)
        raise FormatError(f"{where}: idx {shown} is not a whole number; "
                          "a submission names each test row by it")
    line = where.rsplit(":", 1)[1]
    if int(value) in seen:
        raise FormatError(f"{where}: idx {int(value)} again (first on line {seen[int(value)]}); "
                          "a submission names each test row once")
    seen[int(value)] = line


def _mark_spans(row, where) -> str:
    """WSC asks whether a pronoun refers to a noun phrase, so the model must see both: the text with
    the noun phrase between asterisks and the pronoun between hashes ("*Mark* told Pete ... #He# ...").

    The files give each span's word index in the text split on spaces, and its
    words. Where the words there are not the span's (2 of the 658 spans of
    train and val: an index one word off), the nearest occurrence is marked.
    An index outside the text, or a span that would run past its end, is a
    FormatError: nothing says which occurrence such a row meant.
    """
    target = row["target"]
    keys = [f"span{i}_{part}" for i in "12" for part in ("index", "text")]
    if not isinstance(target, dict):
        raise FormatError(f"{where}: target is {json.dumps(target)}, "
                          f"expected an object with {', '.join(keys)}")
    words = row["text"].split(" ")
    norm = lambda w: w.lower().strip(".,;:!?'\"*#")  # the marks too: the two spans may overlap
    for key, mark in (("span1", "*"), ("span2", "#")):
        index, span = target.get(f"{key}_index"), target.get(f"{key}_text")
        whole = isinstance(index, int) and not isinstance(index, bool)
        if not whole or not isinstance(span, str) or not span.split():
            raise FormatError(f"{where}: target needs {key}_index (a word number) and {key}_text")
        if not 0 <= index < len(words):
            raise FormatError(f"{where}: {key}_index {index} is out of range: the text has "
                              f"{len(words)} words (0 to {len(words) - 1})")
        n = len(span.split())
        first = norm(span.split()[0])
        here = lambda i: norm(words[i]).startswith(first) if 0 <= i < len(words) else False
        found = sorted((i for i in range(len(words)) if here(i)), key=lambda i: abs(i - index))
        if not found:
            raise FormatError(f"{where}: {key}_text {span!r} is not in the text")
        i = found[0]
        if i + n > len(words):
            raise FormatError(f"{where}: {key}_text {span!r} ({n} words from word {i}) runs past the end of "
                              f"the text ({len(words)} words)")
        words[i] = mark + words[i]
        words[i + n - 1] = words[i + n - 1] + mark
    return " ".join(words)


def _mark_word(row) -> tuple[str, str]:
    """WiC asks whether `word` has the same sense in both sentences, so the model must see which word.

    The files give its character span in each sentence, often an inflected form
    ("ran" for run, "went" for go), and we put quotes around it. A span that
    looks wrong (out of range, blank, or another word while the word itself or
    a regular form of it is in the sentence: "round" for call in "called round",
    1 of the 12,132 spans of train and val) is not marked; the word is then
    written before the first sentence instead: "call: ...".
    """
    texts, all_marked = [], True
    word = row["word"]
    for i in "12":
        s, start, end = row[f"sentence{i}"], row[f"start{i}"], row[f"end{i}"]
        in_range = isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(s)
        span = s[start:end] if in_range else ""
        # the word itself, elsewhere
        other = re.search(rf"\b{re.escape(word)}(s|es|d|ed|ing)?\b", s, re.IGNORECASE)
        if span and span == span.strip() and (span[0].lower() == word[:1].lower() or not other):
            s = f'{s[:start]}"{span}"{s[end:]}'
        else:
            all_marked = False
        texts.append(s)
    if not all_marked:
        texts[0] = f"{word}: {texts[0]}"
    return texts[0], texts[1]


# -----------------------------------------------------------------------------
# 3. Submissions
#
# The benchmarks keep their test labels; a test split's predictions go to their
# servers in files of their own layout, each row under the idx it was read with.
# A label is written as the SuperGLUE reference writers (jiant's) write it:
# COPA's as the integers 0 and 1, WSC's as the strings "True" and "False",
# the others (CB, WiC) as their names in the files.

SUBMITTED_LABELS = {"COPA": (0, 1), "WSC": ("False", "True")}


def submission_rows(task, examples, predictions) -> tuple[str, str]:
    """The file the benchmark's server takes for a test split: GLUE "<Task>.tsv", SuperGLUE "<Task>.jsonl"."""
    task = get_task(task)
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")

    def name(p):
        if task.labels is None:  # STS-B: a score, clipped to the scale the server expects
            return f"{min(max(float(p), 0.0), 5.0):.3f}"
        if not 0 <= int(p) < len(task.labels):
            raise ValueError(f"prediction {p} is not a class index of {task.name} "
                             f"(0..{len(task.labels) - 1})")
        return SUBMITTED_LABELS.get(task.name, task.labels)[int(p)]

    if task.kind == "superglue":
        rows = (json.dumps({"idx": int(e.idx), "label": name(p)}) + "\n"
                for e, p in zip(examples, predictions))
        return f"{task.name}.jsonl", "".join(rows)
    rows = (f"{e.idx}\t{name(p)}\n" for e, p in zip(examples, predictions))
    return f"{task.name}.tsv", "index\tprediction\n" + "".join(rows)


# -----------------------------------------------------------------------------
# 4. Metrics, in numpy
#
# Every metric returns a float, classification ones in 0..1 and correlations in
# -1..1. Where a metric is undefined (constant predictions or gold for the
# correlations, nothing positive for F1) it is 0.0, never NaN: a model that
# predicts one class has learned nothing, and a NaN would poison model selection.


def _pair(pred, gold):
    p, g = np.asarray(pred), np.asarray(gold)
    if p.ndim != 1 or p.shape != g.shape:
        raise ValueError(f"predictions {p.shape} and gold {g.shape} must be two 1-d arrays of one length")
    return p, g


def accuracy(pred, gold) -> float:
    p, g = _pair(pred, gold)
    return float(np.mean(p == g)) if len(p) else 0.0


def f1(pred, gold, positive=1) -> float:
    """F1 of one class (binary tasks: class 1, "paraphrase" / "duplicate"): 2 tp / (2 tp + fp + fn)."""
    p, g = (a == positive for a in _pair(pred, gold))
    tp = np.sum(p & g)
    return float(2 * tp / (2 * tp + np.sum(p != g))) if tp else 0.0


def macro_f1(pred, gold, num_classes) -> float:
    """The mean F1 over all the task's classes, a class absent from both sides counting 0."""
    return float(np.mean([f1(pred, gold, k) for k in range(num_classes)]))


def mcc(pred, gold) -> float:
    """Matthews correlation, in the form that also covers more than two classes (Gorodkin 2004):
    (n * correct - sum_k p_k g_k) / sqrt((n^2 - sum_k p_k^2) (n^2 - sum_k g_k^2)),
    p_k and g_k the class counts."""
    p, g = _pair(pred, gold)
    classes = np.union1d(p, g)
    pk = np.array([np.sum(p == c) for c in classes], dtype=float)
    gk = np.array([np.sum(g == c) for c in classes], dtype=float)
    n = float(len(p))
    den = np.sqrt((n * n - pk @ pk) * (n * n - gk @ gk))
    return float((n * np.sum(p == g) - pk @ gk) / den) if den > 0 else 0.0


def pearson(pred, gold) -> float:
    x, y = (a.astype(float) for a in _pair(pred, gold))
    # tested directly: x - mean(x) can miss 0 by rounding
    if len(x) == 0 or x.min() == x.max() or y.min() == y.max():
        return 0.0
    x, y = x - x.mean(), y - y.mean()
    return float(np.clip(x @ y / np.sqrt((x @ x) * (y @ y)), -1.0, 1.0))


def _ranks(a) -> np.ndarray:
    """Ranks from 1; tied values share the mean of the ranks they span."""
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # the rank of each distinct value's last copy
    return (last - (counts - 1) / 2)[inverse.reshape(-1)]


def spearman(pred, gold) -> float:
    p, g = _pair(pred, gold)
    return pearson(_ranks(p), _ranks(g)) if len(p) else 0.0


def scores(task, predictions, gold) -> dict[str, float]:
    """The task's standard metrics (GLUE/SuperGLUE), the one that selects models first:
    {"mcc": 0.52} for CoLA, {"f1": 0.88, "accuracy": 0.84} for MRPC, ..."""
    task = get_task(task)
    if any(g is None for g in gold):
        raise ValueError(f"{task.name}: gold labels missing (a test split has none)")
    metric = {"accuracy": accuracy, "f1": f1, "mcc": mcc, "pearson": pearson, "spearman": spearman,
              "macro_f1": lambda p, g: macro_f1(p, g, len(task.labels))}
    return {m: metric[m](predictions, gold) for m in task.metrics}
