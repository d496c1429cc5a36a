"""
probe.py -- what a checkpoint knows, and what its self-questioning sees.

    python probe.py --model minilm "Paris is the [MASK] of France."   # the top fillers of each mask

Training reports with these functions, and anyone can point them at any
checkpoint:

  1. fill-mask       the words the model puts in place of a mask (a first look)
  2. held-out MLM    loss and accuracy at fixed masked positions of held-out
                     blocks: BERT's random positions, and the tokens a model's
                     self-questioning finds hardest. The masks are seeded, so
                     every run and every method is scored on the same tokens
  3. what SE sees    the tokens the method's rule picks in a sentence, and a
                     page that colours every token of some passages by its
                     self-questioning score
"""

import argparse
import html
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from masking import IGNORE_INDEX, apply_mask, labels_for, random_mask, score_tokens, special_tokens_mask
from model import DEFAULT_MODELS, MaskedLM
from self_evolution import masking_batch, question, select
from tokenizer import Tokenizer

EVAL_SEED = 1234  # the seed of every fixed held-out mask

# -----------------------------------------------------------------------------
# 1. A first look: which words does the model put in place of the mask?


def fill_mask(model: MaskedLM, tok: Tokenizer, text: str, k: int = 5):
    """For each mask token in `text`, the k most likely fillers with their probabilities."""
    for generic in ("[MASK]", "<mask>"):  # accept either spelling; use the checkpoint's own
        text = text.replace(generic, tok.mask_token)
    batch = tok(text)
    masked = batch["input_ids"] == tok.mask_id
    if not masked.any():
        raise ValueError(f"no mask token in {text!r}; "
                         f"write {tok.mask_token} where a word should be predicted")
    with torch.no_grad():
        probs = model(**batch, positions=masked).float().softmax(-1)
    top = probs.topk(k, dim=-1)
    word = lambda i: tok.decode([i]).strip() or tok.tokens([i])[0]
    fillers = lambda ids, ps: [(word(i), p) for i, p in zip(ids.tolist(), ps.tolist())]
    return [fillers(ids, ps) for ids, ps in zip(top.indices, top.values)]


# -----------------------------------------------------------------------------
# 2. Held-out MLM loss and accuracy, on fixed masks


def _row_chunks(n, size):
    return [np.arange(start, min(n, start + size)) for start in range(0, n, size)]


def random_masks(tok, blocks, n, batch_size, device):
    """The first n blocks, masked once at random (BERT's 15%, 80/10/10) with a fixed seed:
    [(corrupted, labels)] on `device`. The same tokens for every run and method that
    share the corpus, tokenizer and block length, so their numbers compare."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    out = []
    for rows in _row_chunks(min(n, len(blocks)), batch_size):
        ids = blocks.batch(rows)
        maskable = ~special_tokens_mask(ids, tok)
        corrupted, labels, _ = random_mask(ids, maskable, tok.mask_id, tok.vocab_size, 0.15, generator)
        out.append((corrupted.to(device), labels.to(device)))
    return out


def hardest_masks(method, model, tok, blocks, n, batch_size, machine):
    """The first n blocks with the 15% of tokens `model` finds hardest masked, the authors'
    way (all replaced by the mask token): [(corrupted, labels)].

    SE trains on exactly such tokens, and random positions are mostly easy
    ones, so the two sets show different sides of what a method learns. The
    rule is the method's built-in one with its score, at a 15% budget.
    """
    rule = replace(method, select="ratio", ratio=0.15, informative_fraction=1.0, masking_fn=None, rule=None)
    generator = torch.Generator().manual_seed(EVAL_SEED)
    out = []
    for rows in _row_chunks(min(n, len(blocks)), batch_size):
        ids = blocks.batch(rows)
        on_device = ids.to(machine.device)
        with machine.autocast:
            scores = score_tokens(question(model, on_device), on_device, rule.score).cpu()
        selected = select(rule, masking_batch(rule, model, tok, ids, generator, scores=scores))
        corrupted, labels = apply_mask(ids, selected, tok.mask_id), labels_for(ids, selected)
        out.append((corrupted.to(machine.device), labels.to(machine.device)))
    return out


@torch.no_grad()
def evaluate(model, batches, autocast, prefix="eval"):
    """MLM loss and accuracy at the masked positions of fixed held-out batches."""
    was_training = model.training
    model.eval()
    loss = correct = count = 0.0
    for corrupted, labels in batches:
        selected = labels != IGNORE_INDEX
        with autocast:
            logits = model(corrupted, positions=selected).float()
        target = labels[selected]
        loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(-1) == target).sum().item()
        count += target.numel()
    model.train(was_training)
    return {f"{prefix}_loss": loss / max(count, 1), f"{prefix}_accuracy": correct / max(count, 1)}


# -----------------------------------------------------------------------------
# 3. What self-questioning sees: the picks in a sentence, a page of scores


def _picks(method, model, tok, ids, machine, token_counts=None):
    """Self-questioning scores of a batch and what the method's rule picks there (the
    informative picks alone: no random share)."""
    rule = replace(method, informative_fraction=1.0)
    with machine.autocast:
        batch = masking_batch(rule, model, tok, ids, torch.Generator(machine.device).manual_seed(0),
                              token_counts=token_counts)
        picked = select(rule, batch)
        scores = batch.scores(method.score)
    return scores, picked, batch.maskable


def show_picks(method, model, tok, text, machine, token_counts=None) -> str:
    """The tokens the method's rule picks in one sentence (in brackets), and the highest scores."""
    ids = tok(text)["input_ids"].to(machine.device)
    scores, picked, maskable = _picks(method, model, tok, ids, machine, token_counts)
    words = tok.tokens(ids[0])
    marked = [f"[{w}]" if p else w for w, p in zip(words, picked[0].tolist())]
    if method.rule:
        rule = f"{method.masking_fn} picks (brackets)"
    else:
        rule = f"self-questioning picks ({method.score} score, brackets)"
    candidates = [(s, w) for w, s, m in zip(words, scores[0].tolist(), maskable[0].tolist()) if m]
    ranked = sorted(candidates, reverse=True)
    highest = ", ".join(f"{w} {s:.2f}" for s, w in ranked[:8])
    return f"{rule}: {' '.join(marked)}\n  highest scores: {highest}"


def write_score_page(method, model, tok, blocks, machine, path, n=4, name=None, token_counts=None):
    """An HTML page colouring every token of the first n blocks by its self-questioning
    score; the tokens the rule picks are underlined. `name`: the model's, for the title."""
    ids = blocks.batch(np.arange(min(n, len(blocks)))).to(machine.device)
    scores, picked, maskable = _picks(method, model, tok, ids, machine, token_counts)
    scores = scores.masked_fill(~maskable, 0).cpu()
    top = float(scores.max()) or 1.0
    parts = ["<html><meta charset='utf-8'><title>self-questioning scores</title>"
             "<body style='font-family:sans-serif;max-width:60em'>",
             f"<h2>Self-questioning scores ({method.score}) of held-out passages</h2>",
             f"<p>Model: {html.escape(str(name or 'the model'))}. Darker red = higher score = less learned; "
             "hover for the value. Underlined: the tokens the masking rule picks.</p>"]
    for row, score_row, pick_row in zip(ids.cpu(), scores, picked.cpu()):
        spans = []
        for token, s, continues, p in zip(tok.tokens(row), score_row.tolist(), tok.continuation[row].tolist(),
                                          pick_row.tolist()):
            style = f"background:rgba(220,30,30,{min(1.0, s / top):.2f})"
            style += ";text-decoration:underline" if p else ""
            text = html.escape(token.removeprefix("##"))
            spans.append(("" if continues else " ") + f"<span title='{s:.3f}' style='{style}'>{text}</span>")
        parts.append("<p style='line-height:1.8'>" + "".join(spans) + "</p>")
    path.write_text("".join(parts) + "</body></html>\n", encoding="utf-8")


# -----------------------------------------------------------------------------
# 4. Command line


def main(argv=None):
    ap = argparse.ArgumentParser(description="What a checkpoint knows: fill the masks of sentences "
                                             "(a first look at a checkpoint).")
    ap.add_argument("text", nargs="+", help="sentence(s) with [MASK] or <mask> where a word should go")
    ap.add_argument("--model", default="minilm",
                    help="checkpoint folder, train.py run folder, hub id, or one of: "
                         f"{', '.join(DEFAULT_MODELS)} (default: minilm)")
    ap.add_argument("--top-k", type=int, default=5, help="fillers to show per mask (default: 5)")
    args = ap.parse_args(argv)
    model = MaskedLM.from_pretrained(args.model)
    tok = Tokenizer(args.model)
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {model.config.model_type}, {model.config.num_hidden_layers} layers, "
          f"hidden {model.config.hidden_size}, {n / 1e6:.1f}M parameters")
    for text in args.text:
        print(text)
        for i, fillers in enumerate(fill_mask(model, tok, text, args.top_k)):
            print(f"  mask {i + 1}: " + "  ".join(f"{w} ({p:.3f})" for w, p in fillers))


if __name__ == "__main__":
    main()
