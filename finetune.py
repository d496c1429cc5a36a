"""
finetune.py -- fine-tune any checkpoint on GLUE/SuperGLUE tasks and report the standard metric.

SE claims a better starting point for downstream tasks, so the ablation fine-tunes
every checkpoint on the same benchmark tasks and compares what the benchmarks report:

  1. tasks    each GLUE/SuperGLUE task read from its original files (the GLUE
              download's .tsv, SuperGLUE's .jsonl); submission files for test
  2. metrics  each task's standard metrics, in numpy
"""

import argparse
import json
import math
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import runtime
from data import DEFAULT_DATA_ROOT, find_data_root
from checkpoint import atomic_write, resolve_checkpoint
from model import EncoderConfig, Prompt, SequenceClassifier
from tokenizer import Tokenizer

# -----------------------------------------------------------------------------
# 1. Tasks, read from their original files
#
#   TASKS[name]                          a Task: labels, metrics, columns, files
#   task_folder(name, data_root=None)    data_root/glue/<folder> or data_root/superglue/<folder>
#   read_examples(name, folder, split)   [Example(text_a, text_b, label, idx), ...]
#   submission_rows(task, examples, predictions) -> (file name, text) for the benchmark's server
#
# Splits are "train", "dev" (GLUE dev.tsv, SuperGLUE val.jsonl) and "test" (no
# labels: label None, idx kept for the submission file). MNLI has two dev and
# test sets, so two tasks: "MNLI-m" (dev_matched.tsv) and "MNLI-mm"
# (dev_mismatched.tsv), both in the folder MNLI; "MNLI" is MNLI-m. Files are
# read as the GLUE download writes them: tab-separated lines split on tabs with
# no quoting (MRPC and STS-B sentences hold stray quotes), UTF-8 with the
# byte-order mark of the official MRPC files dropped.

SPLITS = ("train", "dev", "test")


class FormatError(ValueError):
    """A task file that does not have its task's layout; the message names the file and line."""


@dataclass
class Example:
    text_a: str
    text_b: str | None
    label: int | float | None  # class index, regression target, or None on the test split
    idx: str  # the row's id, written back into a submission file
    choices: tuple = ()  # a multiple-choice task's candidates (COPA): each is scored as (text_a, choice)


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
    return find_data_root(data_root) / task.kind / (task.folder or task.name)


def file_name(task, split) -> str:
    task = get_task(task)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if task.kind == "superglue":
        return {"train": "train", "dev": "val", "test": "test"}[split] + ".jsonl"
    return split + ("" if split == "train" else task.suffix) + ".tsv"


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
    # and \u2028 that can sit inside a sentence. Empty lines (as after the last row) carry nothing.
    lines = [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1) if line not in ("", "\r")]
    examples = (_read_jsonl if task.kind == "superglue" else _read_tsv)(task, path, lines, split)
    if not examples:
        or_header = "" if task.kind == "superglue" else " or only a header"
        raise FormatError(f"{path}: no examples (the file is empty{or_header})")
    return examples


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
    examples = []
    for k, (n, line) in enumerate(rows):
        f = line.split("\t")
        if len(f) != len(names):  # too few, or a tab inside a text: either way the columns would shift
            raise FormatError(f"{path}:{n}: expected {len(names)} tab-separated columns "
                              f"({', '.join(names)}), found {len(f)}")
        label = None if split == "test" else _label(task, f[col[y]], f"{path}:{n}")
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
    examples = []
    for n, line in lines:
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FormatError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise FormatError(f"{where}: expected a JSON object, found {type(row).__name__}")
        if missing := [k for k in dict.fromkeys(need) if k not in row]:
            raise FormatError(f"{where}: missing field {', '.join(missing)}")
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


def _mark_spans(row, where) -> str:
    """WSC asks whether a pronoun refers to a noun phrase, so the model must see both: the text with
    the noun phrase between asterisks and the pronoun between hashes ("*Mark* told Pete ... #He# ...").

    The files give each span's word index in the text split on spaces, and its
    words. Where the words there are not the span's (2 of the 658 spans of
    train and val: an index one word off), the nearest occurrence is marked.
    """
    target = row["target"]
    words = row["text"].split(" ")
    norm = lambda w: w.lower().strip(".,;:!?'\"*#")  # the marks too: the two spans may overlap
    for key, mark in (("span1", "*"), ("span2", "#")):
        index, span = target.get(f"{key}_index"), target.get(f"{key}_text")
        if not isinstance(index, int) or not isinstance(span, str) or not span.split():
            raise FormatError(f"{where}: target needs {key}_index (a word number) and {key}_text")
        n = len(span.split())
        first = norm(span.split()[0])
        here = lambda i: norm(words[i]).startswith(first) if 0 <= i < len(words) else False
        found = sorted((i for i in range(len(words)) if here(i)), key=lambda i: abs(i - index))
        if not found:
            raise FormatError(f"{where}: {key}_text {span!r} is not in the text")
        i = found[0]
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
        return task.labels[int(p)]

    if task.kind == "superglue":
        rows = (json.dumps({"idx": int(e.idx), "label": name(p)}) + "\n"
                for e, p in zip(examples, predictions))
        return f"{task.name}.jsonl", "".join(rows)
    rows = (f"{e.idx}\t{name(p)}\n" for e, p in zip(examples, predictions))
    return f"{task.name}.tsv", "index\tprediction\n" + "".join(rows)


# -----------------------------------------------------------------------------
# 2. Metrics, in numpy
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


# -----------------------------------------------------------------------------
# 3. Fine-tuning one seed
#
# The usual recipe of BERT and RoBERTa papers: a fresh head on the first
# token (model.SequenceClassifier), AdamW, linear warm-up then linear decay,
# a few epochs, the dev set scored after each epoch and the best epoch kept.
# Everything random (the head's initial weights, the order of the examples,
# dropout) comes from the seed, so a seed reproduces a run.


def batches(tok, examples, order, batch_size, max_length, device):
    """(tokenized inputs on the device, labels or None on a test split) in the given order;
    pairs are cut longest side first. A multiple-choice example (COPA) becomes one pair
    (text_a, choice) per choice, in order."""
    for start in range(0, len(order), batch_size):
        rows = [examples[i] for i in order[start:start + batch_size]]
        if rows[0].choices:
            enc = tok([e.text_a for e in rows for _ in e.choices],
                      [c for e in rows for c in e.choices], max_length)
        else:
            pairs = [e.text_b for e in rows] if rows[0].text_b is not None else None
            enc = tok([e.text_a for e in rows], pairs, max_length)
        # on the host: predict needs none
        labels = None if rows[0].label is None else torch.tensor([e.label for e in rows])
        yield {k: runtime.to_device(v, device) for k, v in enc.items()}, labels


def task_logits(model, task, enc, prompt=None):
    """(batch, classes) float32 logits; a multiple-choice task's head scores each choice alone
    (one output), and its choices' scores are the logits."""
    logits = model(**enc, prefix=None if prompt is None else prompt()).float()
    return logits.view(-1, task.choices) if task.choices else logits


def task_loss(task, logits, labels):
    if task.labels is None:  # regression (STS-B)
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def predict(model, tok, task, examples, args, machine, prompt=None, logits=False):
    """Class indices (or regression scores) for every example, in their order; or the logits."""
    was_training = model.training
    model.eval()
    out = []
    order = np.arange(len(examples))
    for enc, _ in batches(tok, examples, order, 2 * args.batch_size, args.max_length, machine.device):
        with machine.autocast:
            scores = task_logits(model, task, enc, prompt)
        out.append(scores if logits else scores.squeeze(-1) if task.labels is None else scores.argmax(-1))
    model.train(was_training)
    return torch.cat(out).cpu().numpy()


# Prompt tuning (Vega v2's downstream half, with P-tuning v2's deep prompts):
# the encoder is frozen and only a prompt and the task head learn. Prompt
# transfer (SPoT, Vu et al. 2022) starts the prompt from a source task's.
# PANDA (Zhong et al. 2022) trains a *teacher*, the source prompt further tuned
# on the target (plain transfer), then a *student* prompt from scratch with
#     loss = cross-entropy + lambda * MSE(student logits, teacher logits),
# lambda growing with how transferable the source is: the cosine similarity
# of the source's prompt and the target's own (trained from scratch).
#
# One departure from PANDA: the cosine compares what training changed in the two
# prompts, each minus its random start. A start is 92,160 draws of N(0, 1) and a
# few hundred steps move it far less than its length, so the cosine of the
# prompts themselves measures their starts: +0.99 for two prompts of the same
# seed, whatever their tasks, and +-0.003 for two seeds, whatever their tasks.


def transferability(source, target) -> float:
    """PANDA's prompt-similarity metric: the cosine similarity of two tasks' prompt changes, flattened
    (`prompt_change`: what each task taught its prompt)."""
    if source.shape != target.shape:
        raise ValueError(f"prompts of shapes {tuple(source.shape)} and {tuple(target.shape)} do not compare")
    return float(F.cosine_similarity(source.flatten(), target.flatten(), dim=0))


def prompt_change(prompt, seed):
    """What tuning changed in a prompt tuned from its random start (model.Prompt.start of its seed)."""
    return prompt - Prompt.start(prompt.shape, seed).to(prompt.device)


def distill_weight(similarity, scale=1.0) -> float:
    """lambda = scale * max(0, similarity): no distillation from a source that points elsewhere."""
    return scale * max(0.0, similarity)


def distillation_loss(student_logits, teacher_logits, labels, task, weight):
    """The student's loss: its task loss plus `weight` times the mean squared distance of its
    logits from the teacher's (PANDA)."""
    return task_loss(task, student_logits, labels) + weight * F.mse_loss(student_logits, teacher_logits)


def classifier(args, task, machine):
    """The checkpoint with a fresh head for the task; frozen but for the head under prompt tuning."""
    with warnings.catch_warnings():  # a pretrained checkpoint has no head for this task: fresh by design
        warnings.simplefilter("ignore")
        outputs = 1 if task.labels is None or task.choices else len(task.labels)
        model = SequenceClassifier.from_pretrained(args.model, num_labels=outputs,
                                                   hidden_dropout_prob=args.dropout,
                                                   attention_probs_dropout_prob=args.dropout)
    if args.tuning == "prompt":
        model.encoder.requires_grad_(False)
    return model.to(machine.device).train()


def finetune_seed(args, task, tok, data, seed, machine, test=None, init=None, teacher=None):
    """Train one seed; return the dev scores of every epoch, the best epoch, its test predictions,
    and, under prompt tuning, its prompt and head (`tuned`).

    `init`: a source prompt to start from (prompt transfer). `teacher`: (its
    logits on the training examples, in their order; lambda) to distil from.
    """
    torch.manual_seed(seed)  # the fresh head and dropout; a fresh prompt's start has its own generator
    model, device = classifier(args, task, machine), machine.device
    prompt = None
    if args.tuning == "prompt":
        prompt = Prompt(model.config, args.prompt_length, seed).to(device)
        if init is not None:
            prompt.prefix.data.copy_(init)
    trainable = model
    if prompt is not None:
        trainable = nn.ModuleDict({"prompt": prompt, "head": nn.ParameterList(model.head().values())})
    train_ex, dev_ex = data["train"], data["dev"]
    total = math.ceil(len(train_ex) / args.batch_size) * args.epochs
    warmup = max(1, round(args.warmup * total))
    optimizer = runtime.make_optimizer(trainable, args.lr, args.weight_decay)  # the authors' betas and eps
    scaler = torch.amp.GradScaler(device.type, enabled=machine.precision == "fp16")
    gold = np.array([e.label for e in dev_ex])
    epochs, best, tuned, step = [], None, None, 0
    bar = tqdm(total=total, desc=f"{task.name} seed {seed}", disable=args.quiet,
               dynamic_ncols=True, leave=False)
    for epoch in range(args.epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(train_ex))
        train_batches = batches(tok, train_ex, order, args.batch_size, args.max_length, device)
        for start, (enc, labels) in zip(range(0, len(order), args.batch_size), train_batches):
            for group in optimizer.param_groups:
                group["lr"] = runtime.lr_at(step, args.lr, warmup, total, schedule="linear")
            with machine.autocast:
                logits = task_logits(model, task, enc, prompt)
            labels = runtime.to_device(labels, device)
            if teacher is None:
                loss = task_loss(task, logits, labels)
            else:  # the teacher's logits of these very examples
                rows = torch.from_numpy(order[start:start + args.batch_size])
                loss = distillation_loss(logits, teacher[0][rows].to(device), labels, task, teacher[1])
            scaler.scale(loss).backward()
            runtime.optimizer_step(optimizer, scaler, trainable.parameters(), clip=1.0)
            step += 1
            bar.update(1)
        predicted = predict(model, tok, task, dev_ex, args, machine, prompt)
        result = {"epoch": epoch + 1, **scores(task, predicted, gold)}
        epochs.append(result)
        bar.set_postfix({k: f"{v:.3f}" for k, v in result.items() if k != "epoch"})
        if best is None or result[task.metric] > best[task.metric]:
            best = result
            predictions = predict(model, tok, task, test, args, machine, prompt) if test else None
            if prompt is not None:  # what a task run keeps: the prompt and the head, not the encoder
                tuned = {"prompt": prompt.prefix.detach().clone(),
                         **{f"head.{k}": v.detach().clone() for k, v in model.head().items()}}
    bar.close()
    return {"seed": seed, "best": best, "epochs": epochs, "test_predictions": predictions, "tuned": tuned}


def teacher_logits(args, task, tok, data, tuned, machine):
    """The logits a tuned prompt and head give the training examples, in their order (a teacher's)."""
    model = classifier(args, task, machine)
    with torch.no_grad():
        for k, p in model.head().items():
            p.copy_(tuned[f"head.{k}"])
    prompt = Prompt(model.config, args.prompt_length).to(machine.device)
    prompt.prefix.data.copy_(tuned["prompt"])
    return torch.from_numpy(predict(model, tok, task, data["train"], args, machine, prompt, logits=True))


def save_tuned(folder, runs, task, report, started_from=None):
    """What prompt-tuning runs keep: every seed's prompt and head (seed-N/), the best seed's beside;
    `started_from`: the run whose prompt they started from (None: a random start, of their seed)."""
    from safetensors.torch import save_file

    best = max(runs, key=lambda r: r["best"][task.metric])
    for where, run in [(folder / f"seed-{r['seed']}", r) for r in runs] + [(folder, best)]:
        where.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in run["tuned"].items()}, str(where / "prompt.safetensors"))
        meta = {"task": task.name, "model": report["model"], "seed": run["seed"], "best": run["best"],
                "started_from": str(started_from) if started_from else "random"}
        (where / "prompt.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def load_tuned(folder):
    """A saved prompt and head (save_tuned) as {name: tensor}."""
    from safetensors.torch import load_file

    path = Path(folder) / "prompt.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no prompt (a prompt-tuning run writes one with --save)")
    return load_file(path)


def load_prompt(folder, config, length):
    """The prompt a prompt-tuning run saved with --save, its shape checked against the model."""
    path = Path(folder) / "prompt.safetensors"
    prompt = load_tuned(folder)["prompt"]
    expected = (config.num_hidden_layers, 2, length, config.hidden_size)
    if tuple(prompt.shape) != expected:
        raise ValueError(f"{path}: a prompt of shape {tuple(prompt.shape)}; this model and --prompt-length "
                         f"{length} need {expected}")
    return prompt


def saved_change(folder):
    """`prompt_change` of the prompt saved in `folder`, which must have been tuned from a random start;
    and the seed of that start."""
    path = Path(folder) / "prompt.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("started_from") != "random":
        raise ValueError(f"{path}: a prompt started from {meta.get('started_from', 'an unrecorded start')}; "
                         "the transferability compares prompts tuned from their random start")
    return prompt_change(load_tuned(folder)["prompt"], meta["seed"]), meta["seed"]


# -----------------------------------------------------------------------------
# 4. A task over several seeds: mean and standard deviation


def subsample(examples, n, seed=0):
    """At most n examples, the same ones for every seed and every model (a fixed draw)."""
    if not n or n >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), n, replace=False))
    return [examples[i] for i in keep]


def run_task(args, name, tok, machine, log=print):
    """Fine-tune (or prompt-tune) args.model on one task for every seed in args.seeds; return the report."""
    task = TASKS[name]
    folder = task_folder(name, args.data_root)
    data = {"train": subsample(read_examples(name, folder, "train"), args.max_train),
            "dev": read_examples(name, folder, "dev")}
    test = read_examples(name, folder, "test") if args.predict else None
    config = EncoderConfig.from_json(resolve_checkpoint(args.model) / "config.json")
    load = lambda f: load_prompt(f, config, args.prompt_length)
    t0, extra = time.time(), {}
    if args.distill_from:  # PANDA: a teacher per seed (the source prompt tuned here), then a fresh student
        source = load(args.distill_from)
        change, seed = saved_change(args.distill_from)
        if args.target_prompt:
            target = saved_change(args.target_prompt)[0]
        else:  # from the source's start: a change from another start also differs by what the start gives
            log(f"{name}: its own prompt, for the transferability (seed {seed}, the source's, from scratch)")
            target = prompt_change(finetune_seed(args, task, tok, data, seed, machine)["tuned"]["prompt"], seed)
        similarity = transferability(change, target)
        weight = distill_weight(similarity, args.distill_scale)
        log(f"{name}: transferability = cosine(source prompt's change, {name}'s own) = {similarity:+.3f}; "
            f"lambda = {args.distill_scale} x max(0, {similarity:.3f}) = {weight:.3f}")
        extra = {"transferability": similarity, "lambda": weight}
        runs = []
        for seed in args.seeds:
            if args.teachers:
                teacher = load_tuned(Path(args.teachers) / f"seed-{seed}")
            else:
                teacher = finetune_seed(args, task, tok, data, seed, machine, init=source)["tuned"]
            logits = teacher_logits(args, task, tok, data, teacher, machine)
            runs.append(finetune_seed(args, task, tok, data, seed, machine, test, teacher=(logits, weight)))
    else:
        init = load(args.prompt_init) if args.prompt_init else None
        runs = [finetune_seed(args, task, tok, data, seed, machine, test, init) for seed in args.seeds]
    metrics = list(task.metrics)
    table = np.array([[r["best"][m] for m in metrics] for r in runs])
    total = sum(p.numel() for p in classifier(args, task, machine).parameters())
    stored = total if args.tuning == "full" else sum(v.numel() for v in runs[0]["tuned"].values())
    report = {"task": name, "model": str(args.model), "tuning": args.tuning,
              "train_examples": len(data["train"]), "dev_examples": len(data["dev"]),
              "metric": task.metric, "seeds": args.seeds, "minutes": (time.time() - t0) / 60,
              "trainable_parameters": stored, "stored_parameters": stored, **extra,
              "mean": dict(zip(metrics, table.mean(0).tolist())),
              "std": dict(zip(metrics, table.std(0).tolist())),
              "runs": [{k: v for k, v in r.items() if k not in ("test_predictions", "tuned")} for r in runs]}
    if args.save:
        save_tuned(Path(args.save) / name, runs, task, report, args.prompt_init)
        log(f"  prompts: {Path(args.save) / name} (the best seed's; every seed's in seed-N/)")
    summary = ", ".join(f"{m} {100 * report['mean'][m]:.2f} ± {100 * report['std'][m]:.2f}"
                        for m in sorted(metrics))
    log(f"{name}: " + summary
        + f"  (dev, best epoch, {len(args.seeds)} seeds, {report['minutes']:.1f} min)")
    if args.predict:
        # the best seed's predictions, as a leaderboard entry would
        best = max(runs, key=lambda r: r["best"][task.metric])
        file_name, text = submission_rows(task, test, best["test_predictions"])
        Path(args.predict).mkdir(parents=True, exist_ok=True)
        (Path(args.predict) / file_name).write_text(text, encoding="utf-8")
        log(f"  test predictions (seed {best['seed']}): {Path(args.predict) / file_name}")
    return report


# -----------------------------------------------------------------------------
# 5. Command line


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Fine-tune a checkpoint on GLUE/SuperGLUE tasks; "
                                             "report the standard dev metrics.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", default="runs/demo",
                    help="checkpoint folder, train.py run folder, hub id, or 'minilm'")
    ap.add_argument("--task", nargs="+", required=True, choices=sorted(TASKS), metavar="TASK",
                    help=f"one or more of {', '.join(TASKS)}")
    ap.add_argument("--data-root", default=None,
                    help="folder with glue/<TASK>/ and superglue/<TASK>/; "
                         f"None: $SE_DATA, else {DEFAULT_DATA_ROOT}")
    positive = runtime.number(int, at_least=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                    help="one run per seed; the report gives mean and std")
    ap.add_argument("--epochs", type=positive, default=3,
                    help="passes over the training set; dev is scored after each")
    ap.add_argument("--batch-size", type=positive, default=32, help="examples per optimizer step")
    ap.add_argument("--lr", type=runtime.number(float, above=0), default=2e-5,
                    help="peak learning rate of AdamW")
    ap.add_argument("--warmup", type=runtime.number(float, at_least=0, at_most=1), default=0.1,
                    help="share of the steps spent warming up the learning rate")
    ap.add_argument("--weight-decay", type=runtime.number(float, at_least=0), default=0.01,
                    help="AdamW decay; biases and LayerNorm are never decayed")
    ap.add_argument("--dropout", type=runtime.number(float, at_least=0, below=1), default=0.1,
                    help="hidden and attention dropout")
    ap.add_argument("--max-length", type=positive, default=None,
                    help="tokens per input, at most the model's positions; pairs are cut longest side first; "
                         "None: 128, or the model's positions if it has fewer")
    ap.add_argument("--max-train", type=runtime.number(int, at_least=0), default=0,
                    help="fine-tune on at most this many training examples (0: all)")
    g = ap.add_argument_group("prompt tuning (Vega v2, PANDA)")
    g.add_argument("--tuning", choices=["full", "prompt"], default="full",
                   help="train every weight, or only a deep prompt and the head, the encoder frozen")
    g.add_argument("--prompt-length", type=positive, default=20,
                   help="prompt vectors per layer (keys and values)")
    g.add_argument("--prompt-init", metavar="RUN",
                   help="prompt transfer: start from the prompt a prompt-tuning "
                        "run saved (a folder with prompt.safetensors)")
    g.add_argument("--distill-from", metavar="RUN",
                   help="PANDA: distil from the prompt of this source run, "
                        "tuned on the task (the teacher), into a fresh prompt")
    g.add_argument("--target-prompt", metavar="RUN",
                   help="the task's own prompt, for the transferability, tuned from a random start (of the "
                        "source's seed, so that both started alike); None: trained first, from that start")
    g.add_argument("--teachers", metavar="RUN", help="teachers already tuned, one per seed in RUN/seed-N/ "
                                                     "(a --prompt-init run's --save); None: tuned here")
    g.add_argument("--distill-scale", type=runtime.number(float, at_least=0), default=1.0,
                   help="lambda = this x max(0, transferability)")
    g.add_argument("--save", metavar="DIR", help="keep each task's prompts and heads in DIR/TASK/ "
                                                 "(prompt tuning)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                    help="auto: bf16 on GPUs that have it, else fp16 with a gradient scaler; fp32 on CPU")
    ap.add_argument("--out", default=None, help="write the report as JSON here")
    ap.add_argument("--predict", default=None, metavar="DIR",
                    help="also write test-set predictions in the GLUE/SuperGLUE submission format")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    prompt_options = ("prompt_init", "distill_from", "target_prompt", "teachers", "save")
    prompting = [o for o in prompt_options if getattr(args, o)]
    if prompting and args.tuning != "prompt":
        ap.error(f"--{prompting[0].replace('_', '-')} is for prompt tuning: add --tuning prompt")
    if args.prompt_init and args.distill_from:
        ap.error("--prompt-init and --distill-from: PANDA's student starts from scratch, its teacher from "
                 "--distill-from's prompt; give one of them")
    if (args.target_prompt or args.teachers) and not args.distill_from:
        ap.error("--target-prompt and --teachers go with --distill-from")
    try:  # the model is known now: a longer input than its positions would fail at the first batch
        positions = EncoderConfig.from_json(resolve_checkpoint(args.model) / "config.json").max_positions
    except (OSError, ValueError) as e:
        ap.error(f"--model {args.model}: {e}")
    if args.max_length is None:
        args.max_length = min(128, positions)
    if args.max_length > positions:
        ap.error(f"argument --max-length: {args.max_length} is more than the model's {positions} positions")
    return args


def main(argv=None):
    args = parse_args(argv)
    machine = runtime.setup(args.device, args.precision)
    tok = Tokenizer(args.model)
    print(f"model {args.model} + a fresh classification head | "
          f"device {machine.device}, {machine.precision} | "
          f"epochs {args.epochs}, batch {args.batch_size}, lr {args.lr}, "
          f"seeds {' '.join(map(str, args.seeds))}")
    try:
        reports = [run_task(args, name, tok, machine) for name in args.task]
    except (FormatError, OSError) as e:
        # a task file that is missing or not in its layout: say where, no traceback
        raise SystemExit(f"error: {e}") from None
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)  # written whole or not at all: the ablation reads it
        atomic_write(out, lambda p: p.write_text(json.dumps(reports, indent=1) + "\n", encoding="utf-8"))
        print(f"report: {args.out}")
    return reports


if __name__ == "__main__":
    main()
