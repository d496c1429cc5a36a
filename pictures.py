"""
pictures.py -- what a person looks at: the score page, a run's curves, the figure of one SE step.

    python pictures.py se-step docs/figures/se-step.png   # the figure of one SE step (make figures)
    python pictures.py curves runs/demo                   # runs/demo/curves.png, from its log.jsonl

Three pictures, each drawn from what the code computes or names, never from a
copy of it:

  1. one SE step     the paper's order as boxes and arrows, each box labelled
                     with the function that computes it, beside a worked
                     example of a few tokens. The labels come from a table
                     (SE_STEP) that a test checks against the code, so the
                     figure cannot drift from it: docs/figures/se-step.png
  2. a run           training loss and learning rate against the steps, and
                     the held-out MLM loss and accuracy at random positions and
                     at the hardest tokens, with the head's warm-up and the
                     method's steps shaded apart; train.py redraws it from
                     log.jsonl at each evaluation: curves.png
  3. the score page  held-out passages coloured token by token by their
                     self-questioning scores (a row of loss, a row of entropy),
                     the rule's picks underlined, a legend of the colours:
                     scores.html. probe.write_score_page computes what it shows
                     (this file never runs a model)

The figures are matplotlib Figures of their own, without pyplot: no window, no
global state left behind by a call in a training loop. Every file is written
whole or not at all (checkpoint.atomic_write).
"""

import argparse
import html
import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

import checkpoint


def _figure(width, height):
    """A matplotlib Figure (inches) and the patches module, imported here on first use: matplotlib takes a
    second to import, and the score page (probe writes one as every run's method begins) needs neither."""
    from matplotlib import patches
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height)), patches


def _save(fig, path, dpi):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    return path


# -----------------------------------------------------------------------------
# 1. The figure of one SE step: the paper's order, each box labelled with its function
#
# One micro-batch of SE is self_evolution.micro_batch_loss: question the model
# about the unmasked sequence, score its tokens, keep the same forward's
# distributions as references, select the highest scores, corrupt them, run
# the training forward on the corrupted input and take the TLS loss. The table
# below is the figure's text; tests/test_pictures.py imports every module it
# names and checks that the function is there.


class Box(NamedTuple):
    """One box of the figure: what the paper does, and the function of the project that does it."""

    module: str  # where the function lives, e.g. "masking"
    function: str  # its name in that module (a method: "Class.method")
    caption: str  # the paper's step, in a few words
    detail: str  # what happens there (matplotlib mathtext between $...$)
    via: str = ""  # "module.function" that it calls to do the work, where the reader should look too


WHOLE_STEP = Box("self_evolution", "micro_batch_loss", "One micro-batch of self-evolution learning",
                 "the boxes below, in this order; runtime.train_step runs it and updates the weights")
SE_STEP = (
    Box("self_evolution", "question", "Stage 1, self-questioning",
        "the model reads $x$ UNMASKED, in eval mode, without gradient:\n"
        r"$p_i = p(\cdot \mid x)$ at every position"),
    Box("masking", "score_tokens", "The scores $s_i$",
        r"$s_i = -\log p_i(x_i)$ (--score loss), or the entropy of $p_i$;" "\n"
        "special tokens are never candidates"),
    Box("masking", "MaskingBatch.logits", "The references $r_i$",
        "the same forward's $p_i$, kept for stage 2:\none unmasked forward serves both stages"),
    Box("self_evolution", "select", "Informative masking: select",
        "the highest scores up to the budget (15% of a passage),\n"
        r"or every token with $s_i > 0.1$ (the authors' rule)", via="masking.select_informative"),
    Box("self_evolution", "corrupt", "Informative masking: corrupt",
        "every selected token becomes the mask token\n(the authors' split: 1 mask / 0 random / 0 kept)",
        via="masking.apply_mask"),
    Box("model", "MaskedLM.forward", "The training forward",
        r"$p_\theta(\cdot \mid \tilde{x})$ on the corrupted input $\tilde{x}$," "\n"
        "the vocabulary projected at the masked positions only"),
    Box("smoothing", "token_specific_label_smoothing", "Stage 2, token-specific label smoothing",
        r"target$_i = (1-\alpha)\,$onehot$(x_i) + \alpha\, r_i$, $\alpha = 0.1$" "\n"
        r"loss = mean over the masked $i$ of $-\Sigma_v\,$target$_i(v) \log p_\theta(v \mid \tilde{x})$"),
)

# The worked example beside the boxes: the paper's sentence, cut short. The
# numbers are illustrative (those of bush, held and sharon are the demo
# model's, in the whole sentence); the picks are the top 2 of them.
EXAMPLE_TOKENS = ("[CLS]", "bush", "held", "a", "talk", "with", "sharon", "[SEP]")
EXAMPLE_SCORES = (None, 5.4, 6.2, 0.1, 2.1, 0.4, 6.7, None)  # None: a special token, never a candidate
EXAMPLE_PICKS = 2
EXAMPLE_REFERENCE = (("had", 0.31), ("held", 0.20), ("gave", 0.09))  # r_held, its three largest entries
ALPHA = 0.1

# Colours of the three parts of the method (the boxes) and of a score (as on the score page).
STAGE_COLOURS = {"stage 1": "#dbe9f6", "informative masking": "#fde3c8", "stage 2": "#d9eed9"}
BOX_STAGE = ("stage 1",) * 3 + ("informative masking",) * 2 + ("stage 2",) * 2
SCORE_RGB = (220, 30, 30)


def _picked(scores, k):
    """The k highest of the example's scores (None: never a candidate), as a tuple of booleans."""
    ranked = sorted((s, -i) for i, s in enumerate(scores) if s is not None)
    chosen = {-i for _, i in ranked[-k:]}
    return tuple(i in chosen for i in range(len(scores)))


CELL = 0.48  # the width of a token's cell in the example, inches


def _token_row(ax, patches, x0, y, tokens, fills=None, bold=None, notes=None):
    """The example's tokens as a row of cells from (x0, y): optional fill colours, cells drawn bold
    (the picks), and a small note under each cell."""
    for i, token in enumerate(tokens):
        x = x0 + i * (CELL + 0.025)
        special = EXAMPLE_SCORES[i] is None
        face = fills[i] if fills else ("#eeeeee" if special else "white")
        edge, line = ("black", 2.0) if bold and bold[i] else ("#888888", 0.8)
        ax.add_patch(patches.Rectangle((x, y), CELL, 0.26, facecolor=face, edgecolor=edge, linewidth=line))
        ax.text(x + CELL / 2, y + 0.13, token, ha="center", va="center", fontsize=8, family="monospace",
                color="#666666" if special else "black")
        if notes:
            ax.text(x + CELL / 2, y - 0.1, notes[i], ha="center", va="center", fontsize=8)


def _examples(ax, patches, x0, ys):
    """The worked example beside each box, at the heights `ys` (the boxes' centres): a row of tokens
    under a line of text, or two lines of text."""
    picks = _picked(EXAMPLE_SCORES, EXAMPLE_PICKS)
    top = max(s for s in EXAMPLE_SCORES if s is not None)
    red = tuple(c / 255 for c in SCORE_RGB)
    fills = ["#eeeeee" if s is None else (*red, s / top) for s in EXAMPLE_SCORES]
    notes = ["never" if s is None else f"{s:.1f}" for s in EXAMPLE_SCORES]
    corrupted = ["[MASK]" if p else t for t, p in zip(EXAMPLE_TOKENS, picks)]
    reference = dict(EXAMPLE_REFERENCE)
    target = {w: ALPHA * p + (1 - ALPHA) * (w == "held") for w, p in EXAMPLE_REFERENCE}
    rows = [  # per box: (a line of text, the token row's arguments) or (two lines of text, None)
        (r"$x$, unmasked: one forward gives $p_i$ at every position", dict(tokens=EXAMPLE_TOKENS)),
        ("the loss score of each token (darker: less learned)", dict(tokens=EXAMPLE_TOKENS, fills=fills,
                                                                     notes=notes)),
        (r"$r_{held} = p(\cdot \mid x)$ at held:  "
         + ",  ".join(f"{w} {p:.2f}" for w, p in EXAMPLE_REFERENCE) + ", ...\n"
         "kept at the masked positions only: a target, never differentiated", None),
        (f"the top {EXAMPLE_PICKS} scores, framed (the budget is 15% of a passage)",
         dict(tokens=EXAMPLE_TOKENS, fills=fills, bold=picks, notes=notes)),
        (r"$\tilde{x}$: the input of the training forward", dict(tokens=corrupted, bold=picks)),
        (rf"$p_\theta(\cdot \mid \tilde{{x}})$ at the {sum(picks)} masked positions of {len(picks)}:" "\n"
         "the other positions never reach the vocabulary (positions=...)", None),
        (rf"target$_{{held}}$ = {1 - ALPHA:.1f} onehot(held) + {ALPHA:.1f} $r_{{held}}$:" "\n"
         + f"held {target['held']:.2f} ({1 - ALPHA:.1f} + {ALPHA:.1f} x {reference['held']:.2f}),  "
         + ",  ".join(f"{w} {t:.2f}" for w, t in target.items() if w != "held") + ",  ...", None),
    ]
    for y, (text, cells) in zip(ys, rows):
        if cells is None:
            ax.text(x0, y, text, fontsize=8.5, va="center", linespacing=1.8)
        else:
            ax.text(x0, y + 0.26, text, fontsize=8.5, va="center")
            _token_row(ax, patches, x0, y - 0.1, **cells)


def draw_se_step(path, dpi=150):
    """The figure of one SE step (docs/figures/se-step.png): the boxes of SE_STEP top to bottom, each
    labelled with its function, the references' way to the loss, and the worked example beside them.
    9 inches wide (900 pixels at 100 per inch: the README's width). Returns the path."""
    row, height, left, width = 1.0, 0.86, 0.55, 4.05
    top = 0.85 + len(SE_STEP) * row
    fig, patches = _figure(9, top + 0.45)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set(xlim=(0, 9), ylim=(0, top + 0.45))
    ax.axis("off")
    whole = f"{WHOLE_STEP.module}.{WHOLE_STEP.function}"
    ax.text(0.15, top + 0.22, f"{WHOLE_STEP.caption}: {whole}", fontsize=12.5, weight="bold", va="center")
    ax.text(0.15, top - 0.08, WHOLE_STEP.detail + "; right: a worked example (numbers illustrative)",
            fontsize=8.5, va="center", color="#333333")
    ys = [top - 0.3 - row * (i + 0.5) for i in range(len(SE_STEP))]
    for box, y, stage in zip(SE_STEP, ys, BOX_STAGE):
        ax.add_patch(patches.FancyBboxPatch((left, y - height / 2), width, height, linewidth=0.8,
                                            boxstyle="round,pad=0,rounding_size=0.06", edgecolor="#555555",
                                            facecolor=STAGE_COLOURS[stage]))
        name = f"{box.module}.{box.function}" + (f" -> {box.via}" if box.via else "")
        ax.text(left + 0.08, y + 0.29, box.caption, fontsize=10, weight="bold", va="center")
        ax.text(left + 0.08, y + 0.09, name, fontsize=8, family="monospace", va="center", color="#1a4f8a")
        ax.text(left + 0.08, y - 0.01, box.detail, fontsize=8.5, va="top", linespacing=1.45)
    for upper, lower in zip(ys, ys[1:]):  # the paper's order
        ax.add_patch(patches.FancyArrowPatch((left + 0.5, upper - height / 2),
                                             (left + 0.5, lower + height / 2),
                                             arrowstyle="-|>", mutation_scale=11, color="#333333"))
    # r_i goes from the unmasked forward to the loss, past the masking: a target, without gradient.
    ax.add_patch(patches.FancyArrowPatch((left, ys[2]), (left, ys[6]), connectionstyle="arc3,rad=0.3",
                                         arrowstyle="-|>", mutation_scale=11, color="#2e7d32", linewidth=1.3))
    ax.text(0.1, (ys[2] + ys[6]) / 2, r"$r_i$, no gradient", rotation=90, ha="center", va="center",
            fontsize=8.5, color="#2e7d32")
    _examples(ax, patches, left + width + 0.2, ys)
    for i, (stage, colour) in enumerate(STAGE_COLOURS.items()):
        ax.add_patch(patches.Rectangle((left + 2.2 * i, 0.12), 0.25, 0.16, facecolor=colour,
                                       edgecolor="#555555", linewidth=0.6))
        ax.text(left + 0.32 + 2.2 * i, 0.2, stage, fontsize=8.5, va="center")
    return _save(fig, path, dpi)


# -----------------------------------------------------------------------------
# 2. A run's curves, from its log.jsonl
#
# train.py logs a line per --log-every steps ({"step", "phase": "head" or
# "method", "loss", "lr", "tokens_per_s"}) and a line per evaluation ({"step",
# "phase": "start", "head trained", "head", "method" or "end", "eval_loss",
# "eval_accuracy", and "hard_loss", "hard_accuracy" once the method has fixed
# its hardest tokens}); runtime.StepLog writes them.

CURVES = "curves.png"


def read_log(path):
    """A run's log.jsonl as (training lines, evaluation lines), each a list of dicts. A torn last line
    (a crash while it was written: checkpoint.trim_log drops it on --resume) is left out; a damaged
    line before it is a ValueError naming the line."""
    path = Path(path)
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
                raise ValueError
        except ValueError:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a log line (a JSON object with a step)") from None
        entries.append(entry)
    return ([e for e in entries if "loss" in e], [e for e in entries if "eval_loss" in e])


def _points(entries, key):
    """(steps, values) of the entries that hold a finite `key`."""
    kept = [(e["step"], e[key]) for e in entries
            if isinstance(e.get(key), (int, float)) and math.isfinite(e[key])]
    return tuple(zip(*kept)) if kept else ((), ())


class Curves(NamedTuple):
    """What a run's figure shows, read from its log."""

    panels: list  # [(title, {label: (steps, values)})]: four panels; a series without a point is left out
    head_end: int | None  # the step where the head's warm-up ends and the method begins (None: no head)
    last: int  # the last step logged (0 for an empty log)


def read_curves(log_path) -> Curves:
    """The curves of a run's log.jsonl: training loss and learning rate (its training lines), held-out
    MLM loss and accuracy at random positions and at the hardest tokens (its evaluations)."""
    training, evaluations = read_log(log_path)
    series = (("training loss (each phase on its own tokens, with its own loss)", training,
               (("loss", "training loss"),)),
              ("learning rate", training, (("lr", "learning rate"),)),
              ("held-out MLM loss", evaluations, (("eval_loss", "random positions"),
                                                  ("hard_loss", "hardest tokens"))),
              ("held-out MLM accuracy", evaluations, (("eval_accuracy", "random positions"),
                                                      ("hard_accuracy", "hardest tokens"))))
    panels = []
    for title, entries, keys in series:
        drawn = {label: _points(entries, key) for key, label in keys}
        panels.append((title, {label: points for label, points in drawn.items() if points[0]}))
    # The head phase's training lines end with one at its last step, and "head trained" is evaluated there.
    head = [e["step"] for e in training if e.get("phase") == "head"]
    head += [e["step"] for e in evaluations if e.get("phase") == "head trained"]
    last = max([e["step"] for e in training + evaluations], default=0)
    return Curves(panels, max(head) if head else None, last)


HEAD_SHADE, METHOD_SHADE = "#9e9e9e", "#64b5f6"


def _shade(ax, head_end, last):
    """The head's warm-up (random masking for a fresh MLM head) and the method's steps, shaded apart."""
    method_begins = 0 if head_end is None else head_end
    if head_end is not None:
        ax.axvspan(0, head_end, color=HEAD_SHADE, alpha=0.18, linewidth=0)
    if last > method_begins:
        ax.axvspan(method_begins, last, color=METHOD_SHADE, alpha=0.12, linewidth=0)


def _shade_legend(fig, head_end):
    from matplotlib.patches import Patch
    shades = [Patch(color=METHOD_SHADE, alpha=0.3, label="the method's steps (--steps)")]
    if head_end is not None:
        shades.insert(0, Patch(color=HEAD_SHADE, alpha=0.4,
                               label="the head's warm-up (--head-steps: random masking, a fresh MLM head)"))
    fig.legend(handles=shades, loc="upper center", bbox_to_anchor=(0.5, 0.95), ncol=2, fontsize=8,
               frameon=False)


def write_curves(log_path, png_path=None, title=None, dpi=100):
    """The curves of a run (its log.jsonl) as a PNG, by default curves.png beside the log: training loss
    and learning rate against the steps, held-out MLM loss and accuracy at random positions and at the
    hardest tokens; the head's warm-up and the method's steps shaded apart. Any log train.py writes
    draws, from its first evaluation on: no evaluation yet, a single step, a torn last line; values
    that are not finite are left out. Under a second. Returns the PNG's path."""
    log_path = Path(log_path)
    png_path = Path(png_path) if png_path else log_path.with_name(CURVES)
    curves = read_curves(log_path)
    fig, _ = _figure(10, 6.2)
    axes = fig.subplots(2, 2, sharex=True)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.86, wspace=0.2, hspace=0.28)
    for number, (ax, (name, series)) in enumerate(zip(axes.flat, curves.panels)):
        for label, (steps, values) in series.items():
            ax.plot(steps, values, marker="o", markersize=2.5, linewidth=1.2, label=label)
        if not series:
            what = "no training step logged yet" if number < 2 else "no evaluation yet"
            ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="#777777")
        elif number >= 2:
            ax.legend(fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        _shade(ax, curves.head_end, curves.last)
    for ax in axes[1]:
        ax.set_xlabel("step")
    axes[0][1].ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    axes[0][0].set_xlim(0, max(1, curves.last))
    fig.suptitle(title or f"{log_path.parent.name}: training and held-out MLM (step {curves.last})",
                 fontsize=12)
    _shade_legend(fig, curves.head_end)
    return _save(fig, png_path, dpi)


# -----------------------------------------------------------------------------
# 3. The score page: held-out passages coloured by their self-questioning scores
#
# probe.write_score_page questions the model about a few held-out blocks and
# hands this section what it found, a Passage per block. The page shows both
# scores (a row of loss, a row of entropy per passage), each on its own colour
# scale, and underlines the tokens the masking rule picks in both rows.


class Passage(NamedTuple):
    """One held-out block as the score page shows it: arrays of one entry per token."""

    pieces: list  # the tokens' text as shown ("##" and the BPE word-start marks removed)
    joins: np.ndarray  # bool: the token continues the previous word (no space before it)
    scores: dict  # {"loss": float array, "entropy": float array}; only candidates' entries are read
    candidate: np.ndarray  # bool: the rule may pick the token (False at special tokens)
    picked: np.ndarray  # bool: the rule picks it


SCORE_NAMES = {"loss": "loss, -log p_i(x_i)", "entropy": "entropy of p_i"}  # p_i = p(. | x), x unmasked
PAGE_STYLE = ("body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em}"
              ".row{line-height:1.9;margin:0.2em 0}.kind{display:inline-block;width:5.5em;color:#555;"
              "font-size:0.85em}.legend td{padding:0.1em 0.5em;font-size:0.85em}"
              ".passage{border-top:1px solid #ccc;padding-top:0.4em;margin-top:0.8em}")


def _colour(value, top):
    r, g, b = SCORE_RGB
    return f"background:rgba({r},{g},{b},{min(1.0, max(0.0, value / top)):.2f})"


def _legend(tops, ranked_by, picks_by):
    """The colour scale of each score with its values, and what the underline means."""
    rows = []
    for kind, top in tops.items():
        cells = "".join(f"<td style='{_colour(v, top)}'>{v:.1f}</td>" for v in np.linspace(0, top, 6))
        mark = " (the rule's score)" if kind == ranked_by else ""
        rows.append(f"<tr><td>{html.escape(SCORE_NAMES[kind])}{mark}</td>{cells}</tr>")
    return ("<p>The colours: each score on its own scale, from 0 to its highest value on this page.</p>"
            "<table class='legend'>" + "".join(rows) + "</table>"
            "<p><u>underlined</u>: the tokens picked by "
            f"{html.escape(picks_by)}, in both rows. Grey, no colour: special tokens, never candidates. "
            "Hover over a token for its score.</p>")


def _row(passage, kind, top):
    """One passage's tokens, coloured by one score: a span per token, the picks underlined."""
    spans = []
    for piece, joins, score, candidate, picked in zip(passage.pieces, passage.joins.tolist(),
                                                      passage.scores[kind].tolist(),
                                                      passage.candidate.tolist(), passage.picked.tolist()):
        if candidate:
            title, style = f"{kind} {score:.3f}", _colour(score, top)
        else:
            title, style = "special token: never a candidate", "color:#999"
        style += ";text-decoration:underline" if picked else ""
        span = f"<span title='{title}' style='{style}'>{html.escape(piece)}</span>"
        spans.append(span if joins else " " + span)
    return f"<p class='row'><span class='kind'>{kind}</span>{''.join(spans)}</p>"


def score_page(path, passages, *, model_name, picks_by, ranked_by=None, note=""):
    """Write the score page of `passages` (a list of Passage) at `path`: one self-contained HTML file.

    `model_name`: the model as the user named it. `picks_by`: whose picks the
    underlines are, in words ("self-questioning (...)", "your rule FILE:FUNC").
    `ranked_by`: the score the rule ranks by ("loss" or "entropy"), marked in
    the legend; None for a rule of your own, which may use either or neither.
    `note`: a sentence more, shown under the legend. Each score has its own
    colour scale, from 0 to its highest value among the passages' candidates.
    """
    kinds = tuple(SCORE_NAMES)
    tops = {}
    for kind in kinds:
        values = [p.scores[kind][p.candidate] for p in passages]
        highest = max((float(v.max()) for v in values if v.size), default=0.0)
        tops[kind] = highest if highest > 0 else 1.0
    passages_held_out = f"{len(passages)} held-out passage" + ("s" if len(passages) != 1 else "")
    body = [f"<h2>Self-questioning scores of {passages_held_out}</h2>",
            f"<p>Model: <b>{html.escape(str(model_name))}</b>. Each passage is shown twice, coloured by each "
            "score: darker red is a higher score, a token the model has learned less.</p>",
            _legend(tops, ranked_by, picks_by)]
    if note:
        body.append(f"<p>{html.escape(note)}</p>")
    for number, passage in enumerate(passages, 1):
        rows = "".join(_row(passage, kind, tops[kind]) for kind in kinds)
        body.append(f"<div class='passage'><p><b>passage {number}</b></p>{rows}</div>")
    page = ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'/><title>self-questioning scores</title>"
            f"<style>{PAGE_STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    path = Path(path)
    checkpoint.atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path


# -----------------------------------------------------------------------------
# 4. Command line


def main(argv=None):
    ap = argparse.ArgumentParser(description="Draw the figure of one SE step, or a run folder's curves.")
    commands = ap.add_subparsers(dest="command", required=True)
    step = commands.add_parser("se-step", help="the figure of one SE step (docs/figures/se-step.png)")
    step.add_argument("png", nargs="?", default="docs/figures/se-step.png")
    curves = commands.add_parser("curves", help="a run folder's curves.png, from its log.jsonl")
    curves.add_argument("run", help="a train.py run folder (or its log.jsonl)")
    curves.add_argument("png", nargs="?", help=f"default: {CURVES} in the run folder")
    args = ap.parse_args(argv)
    if args.command == "se-step":
        print(draw_se_step(args.png))
        return
    log = Path(args.run)
    log = log / checkpoint.LOG if log.is_dir() else log
    if not log.is_file():
        raise SystemExit(f"error: {log}: no such log (a train.py run folder holds {checkpoint.LOG})")
    try:
        print(write_curves(log, args.png))
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
