"""pictures.py: the figure of one SE step names real functions, a run's curves draw any log train.py
writes, and the score page is one well-formed file with a span per token and row."""

import importlib
import json
import math
import re
import shutil
import subprocess
from functools import reduce
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

import pictures
from masking import select_informative

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) of a PNG file, read from its header."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# ----------------------------------------------------------------- the figure of one SE step


def test_every_box_of_the_se_step_figure_names_a_function_of_the_code():
    boxes = (pictures.WHOLE_STEP, *pictures.SE_STEP)
    named = [(box.module, box.function) for box in boxes]
    named += [tuple(box.via.split(".", 1)) for box in boxes if box.via]
    for module, function in named:
        found = reduce(getattr, function.split("."), importlib.import_module(module))
        assert callable(found), f"{module}.{function}"
    # the paper's order, from the unmasked forward to the loss
    order = [box.function for box in pictures.SE_STEP]
    paper = ["question", "score_tokens", "select", "corrupt", "MaskedLM.forward",
             "token_specific_label_smoothing"]
    assert [order.index(f) for f in paper] == sorted(order.index(f) for f in paper)
    assert len(pictures.BOX_STAGE) == len(pictures.SE_STEP)
    # and so does every function of the project that the boxes' text mentions in passing
    text = " ".join(f"{box.caption} {box.detail}" for box in boxes)
    project = r"\b(self_evolution|masking|smoothing|model|runtime|probe)\.(\w+)"
    for module, function in re.findall(project, text):
        assert callable(getattr(importlib.import_module(module), function)), f"{module}.{function}"
    assert "runtime.train_step" in text


def test_the_worked_example_picks_what_the_code_would_pick_there():
    picks = pictures._picked(pictures.EXAMPLE_SCORES, pictures.EXAMPLE_PICKS)
    assert [t for t, p in zip(pictures.EXAMPLE_TOKENS, picks) if p] == ["held", "sharon"]
    scores = torch.tensor([[math.nan if s is None else s for s in pictures.EXAMPLE_SCORES]])
    maskable = ~scores.isnan()
    ratio = (pictures.EXAMPLE_PICKS + 1e-6) / maskable.sum().item()  # a budget of exactly that many
    code = select_informative(scores, maskable, ratio, generator=torch.Generator().manual_seed(0))
    assert tuple(code[0].tolist()) == picks
    assert pictures._picked((None, 1.0, None), 2) == (False, True, False)  # fewer candidates than picks


def test_the_se_step_figure_is_drawn_at_the_readme_s_width(tmp_path):
    path = pictures.draw_se_step(tmp_path / "figures" / "se-step.png", dpi=100)
    width, height = png_size(path)
    assert width == 900 and 700 < height < 1100
    assert [p.name for p in path.parent.iterdir()] == ["se-step.png"]  # written whole: no temporary left


def test_the_committed_se_step_figure_is_there():
    path = Path(__file__).resolve().parent.parent / "docs" / "figures" / "se-step.png"
    assert png_size(path)[0] >= 900


# ----------------------------------------------------------------- a run's curves


def write_log(path, entries, torn=""):
    path.write_text("".join(json.dumps(e) + "\n" for e in entries) + torn, encoding="utf-8")
    return path


# What train.py logs for --head-steps 4 --steps 4 --log-every 2 --eval-every 2 (runtime.StepLog, evaluate)
HEAD_AND_METHOD = [
    {"step": 0, "phase": "start", "eval_loss": 9.0, "eval_accuracy": 0.0},
    {"step": 2, "phase": "head", "loss": 8.0, "lr": 1e-3, "tokens_per_s": 100.0},
    {"step": 2, "phase": "head", "eval_loss": 7.0, "eval_accuracy": 0.1},
    {"step": 4, "phase": "head", "loss": 6.0, "lr": 2e-3, "tokens_per_s": 100.0},
    {"step": 4, "phase": "head trained", "eval_loss": 6.5, "eval_accuracy": 0.2, "hard_loss": 9.5,
     "hard_accuracy": 0.0},
    {"step": 6, "phase": "method", "loss": 9.0, "lr": 1e-3, "tokens_per_s": 100.0},
    {"step": 6, "phase": "method", "eval_loss": 6.6, "eval_accuracy": 0.19, "hard_loss": 9.0,
     "hard_accuracy": 0.01},
    {"step": 8, "phase": "method", "loss": 8.5, "lr": 0.0, "tokens_per_s": 100.0},
    {"step": 8, "phase": "end", "eval_loss": 6.4, "eval_accuracy": 0.21, "hard_loss": 8.8,
     "hard_accuracy": 0.02},
]


def test_the_curves_show_every_logged_value_and_where_the_method_begins(tmp_path):
    log = write_log(tmp_path / "log.jsonl", HEAD_AND_METHOD)
    curves = pictures.read_curves(log)
    assert curves.head_end == 4 and curves.last == 8
    (_, loss), (_, lr), (_, mlm_loss), (_, accuracy) = curves.panels
    assert loss == {"training loss": ((2, 4, 6, 8), (8.0, 6.0, 9.0, 8.5))}
    assert lr["learning rate"] == ((2, 4, 6, 8), (1e-3, 2e-3, 1e-3, 0.0))
    assert mlm_loss["random positions"] == ((0, 2, 4, 6, 8), (9.0, 7.0, 6.5, 6.6, 6.4))
    assert mlm_loss["hardest tokens"] == ((4, 6, 8), (9.5, 9.0, 8.8))
    assert accuracy["hardest tokens"] == ((4, 6, 8), (0.0, 0.01, 0.02))
    path = pictures.write_curves(log)
    assert path == tmp_path / "curves.png" and png_size(path) == (1000, 620)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "log.jsonl"]


def test_a_run_without_a_head_phase_is_all_method(tmp_path):
    log = write_log(tmp_path / "log.jsonl", [
        {"step": 0, "phase": "start", "eval_loss": 5.0, "eval_accuracy": 0.1},
        {"step": 1, "phase": "method", "loss": 4.0, "lr": 1e-5}])
    assert pictures.read_curves(log)[1:] == (None, 1)


@pytest.mark.parametrize("case", ["empty", "first evaluation", "one step", "torn last line", "not finite",
                                  "head only"])
def test_the_curves_draw_any_log_a_run_writes(tmp_path, case):
    entries, torn = {
        "empty": ([], ""),
        "first evaluation": (HEAD_AND_METHOD[:1], ""),  # train.py's first call: nothing trained yet
        "one step": ([{"step": 1, "phase": "method", "loss": 3.0, "lr": 1e-5}], ""),
        "torn last line": (HEAD_AND_METHOD[:4], '{"step": 6, "phase": "meth'),  # a crash while it was written
        "not finite": (HEAD_AND_METHOD + [{"step": 9, "phase": "method", "loss": math.nan, "lr": math.inf}],
                       ""),
        "head only": (HEAD_AND_METHOD[:4], ""),
    }[case]
    log = write_log(tmp_path / "log.jsonl", entries, torn)
    curves = pictures.read_curves(log)
    for _, series in curves.panels:
        for steps, values in series.values():
            assert len(steps) == len(values) > 0 and all(math.isfinite(v) for v in values)
    if case == "torn last line":
        assert curves.last == 4  # the torn line is left out
    if case == "head only":
        assert curves.head_end == curves.last == 4
    if case == "empty":
        assert all(not series for _, series in curves.panels)
    assert png_size(pictures.write_curves(log, tmp_path / "out" / "curves.png")) == (1000, 620)


def test_a_log_damaged_before_its_last_line_is_refused_naming_the_line(tmp_path):
    log = write_log(tmp_path / "log.jsonl", HEAD_AND_METHOD[:2])
    log.write_text("{oops\n" + log.read_text())
    with pytest.raises(ValueError, match=r"log.jsonl:1: not a log line"):
        pictures.write_curves(log)
    assert not (tmp_path / "curves.png").exists()


def test_the_curves_leave_no_pyplot_figure_behind(tmp_path):
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    pictures.write_curves(write_log(tmp_path / "log.jsonl", HEAD_AND_METHOD))
    assert plt.get_fignums() == before


def test_the_command_draws_a_run_folder_s_curves_and_names_a_missing_log(tmp_path, capsys):
    write_log(tmp_path / "log.jsonl", HEAD_AND_METHOD)
    pictures.main(["curves", str(tmp_path)])
    assert capsys.readouterr().out.strip() == str(tmp_path / "curves.png")
    with pytest.raises(SystemExit, match="no such log"):
        pictures.main(["curves", str(tmp_path / "nowhere")])


# ----------------------------------------------------------------- the score page


class Page(HTMLParser):
    """An HTML page's structure: every tag closed in order (void elements written <x/>), and its token
    spans (those with a title) with their style."""

    def __init__(self, text):
        super().__init__()
        self.open, self.errors, self.tokens, self.title = [], [], [], []
        self.feed(text)
        self.close()
        self.errors += [f"<{tag}> never closed" for tag in self.open]

    def handle_starttag(self, tag, attrs):
        self.open.append(tag)
        attrs = dict(attrs)
        if tag == "span" and "title" in attrs:
            self.tokens.append(attrs)

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.open[-1] if self.open else 'nothing'}>")
        else:
            self.open.pop()

    def handle_data(self, data):
        if self.open and self.open[-1] == "title":
            self.title.append(data)


def marked(page):
    return sum("text-decoration:underline" in t["style"] for t in page.tokens)


def passage(pieces, picked, special=(0, -1), seed=0):
    n = len(pieces)
    candidate = np.ones(n, bool)
    candidate[list(special)] = False
    rng = np.random.default_rng(seed)
    scores = {"loss": rng.uniform(0, 8, n), "entropy": rng.uniform(0, 5, n)}
    return pictures.Passage(pieces, np.zeros(n, bool), scores, candidate, np.isin(np.arange(n), picked))


def test_the_score_page_is_well_formed_with_a_span_per_token_and_row(tmp_path):
    passages = [passage(["[CLS]", "bush", "held", "<b>", "[SEP]"], [1, 2]),
                passage(["[CLS]", "a", "talk", "with", "sharon", "[SEP]"], [4], seed=1)]
    path = pictures.score_page(tmp_path / "scores.html", passages, model_name="runs/<demo>",
                               picks_by="self-questioning (the top 15%)", ranked_by="loss")
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert page.errors == []
    assert len(page.tokens) == (5 + 6) * 2  # tokens x rows (loss and entropy)
    assert marked(page) == 3 * 2  # the picks, underlined in both rows
    specials = [t for t in page.tokens if t["title"].startswith("special")]
    assert len(specials) == 4 * 2 and not any("rgba" in t["style"] for t in specials)
    # the legend: both colour scales, from 0 to the highest candidate's score, and what the marks mean
    for kind, values in (("loss", [p.scores["loss"][p.candidate] for p in passages]),
                         ("entropy", [p.scores["entropy"][p.candidate] for p in passages])):
        assert f">{max(v.max() for v in values):.1f}</td>" in text
    assert "(the rule's score)" in text and "picked by self-questioning (the top 15%)" in text
    assert "runs/&lt;demo&gt;" in text and "&lt;b&gt;" in text  # escaped, as given
    assert "http" not in text and "<script" not in text and "<link" not in text  # self-contained


def test_the_score_page_of_a_rule_of_your_own_names_it_and_marks_no_score_as_its_own(tmp_path):
    path = pictures.score_page(tmp_path / "scores.html", [passage(["[CLS]", "x", "[SEP]"], [1])],
                               model_name="m", picks_by="your rule my.py:f", note="Colours: built-in scores.")
    text = path.read_text()
    assert "picked by your rule my.py:f" in text and "built-in scores" in text
    assert "(the rule's score)" not in text
    assert Page(text).errors == []


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "firefox")


def test_a_browser_renders_the_score_page(tmp_path):
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip(f"no headless browser in PATH ({', '.join(BROWSERS)})")
    page = pictures.score_page(tmp_path / "scores.html", [passage(["[CLS]", "bush", "held", "[SEP]"], [2])],
                               model_name="m", picks_by="self-questioning", ranked_by="loss")
    shot = tmp_path / "shot.png"
    if "firefox" in browser:
        command = [browser, "--headless", "--window-size", "900,700", "--screenshot", str(shot),
                   page.as_uri()]
    else:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                   "--window-size=900,700", page.as_uri()]
    subprocess.run(command, capture_output=True, timeout=120, cwd=tmp_path)
    assert shot.is_file(), f"{browser} wrote no screenshot"
    width, height = png_size(shot)
    assert width >= 900 and height >= 700
