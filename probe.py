"""
probe.py -- what a checkpoint knows, and what its self-questioning sees.

    python probe.py --model runs/demo "Paris is the [MASK] of France."  # the top fillers of each mask
    python probe.py --model runs/demo --blimp --json blimp.json        # linguistic knowledge (BLiMP)
    python probe.py --model runs/demo --text other.txt                 # MLM on text it was not trained on

A model without a trained MLM head (the raw MiniLM: an encoder alone) would be
probed through a head drawn at random, so the command refuses it unless
--fresh-head-ok, and then flags every number ("fresh_head": true).

Training reports with these functions, and anyone can point them at any
checkpoint:

  1. fill-mask       the words the model puts in place of a mask (a first look)
  2. held-out MLM    loss and accuracy at fixed masked positions of held-out
                     blocks: BERT's random positions, and the tokens a model's
                     self-questioning finds hardest. The masks are seeded, so
                     every run and every method is scored on the same tokens
  3. what SE sees    the tokens the method's rule picks in some sentences, and
                     a page (pictures.score_page) that colours every token of
                     some passages by its self-questioning scores, loss and
                     entropy; what train.py shows as the method begins
                     (method_start) and again after its last step, by the
                     trained model (method_end)
  4. BLiMP           67 paradigms of minimal pairs, a grammatical and an
                     ungrammatical sentence; a masked LM is right on a pair
                     when it gives the grammatical one the higher
                     pseudo-log-likelihood (the paper's "linguistic knowledge")
"""

import argparse
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import checkpoint
import data
import pictures
import runtime
from masking import IGNORE_INDEX, apply_mask, labels_for, random_mask, score_tokens, special_tokens_mask
from model import MaskedLM
from self_evolution import MaskingContext, check_rule, question, rule_input, select
from tokenizer import Tokenizer

EVAL_SEED = 1234  # the seed of every fixed held-out mask
HARDEST = "hardest-heldout.pt"  # in a run folder: the held-out hardest tokens, fixed when the method begins

# -----------------------------------------------------------------------------
# 1. A first look: which words does the model put in place of the mask?


def fill_mask(model: MaskedLM, tok: Tokenizer, text: str, k: int = 5):
    """For each mask token in `text`, the k most likely fillers with their probabilities."""
    for generic in ("[MASK]", "<mask>"):  # accept either spelling; use the checkpoint's own
        text = text.replace(generic, tok.mask_token)
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in tok(text).items()}
    if batch["input_ids"].shape[1] > model.config.max_positions:
        raise ValueError(f"{_shown(text)}: {batch['input_ids'].shape[1]} tokens, more than the model's "
                         f"{model.config.max_positions} positions")
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


def _shown(text, n=60):
    """A text for a message: its first n characters."""
    return repr(text if len(text) <= n else text[:n] + "...")


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
        scores = score_tokens(question(model, on_device, precision=rule.questioning_precision), on_device,
                              rule.score).cpu()
        batch = rule_input(rule, model, tok, ids, generator, MaskingContext(stored_scores=scores))
        selected = select(rule, batch)
        corrupted, labels = apply_mask(ids, selected, tok.mask_id), labels_for(ids, selected)
        out.append((corrupted.to(machine.device), labels.to(machine.device)))
    return out


@torch.no_grad()
def block_scores(model, batches, autocast):
    """Per block of fixed held-out batches: the summed MLM loss at its masked positions, the
    right guesses among them and their number, as three float64 arrays (for paired bootstraps)."""
    was_training = model.training
    model.eval()
    loss, correct, count = [], [], []
    for corrupted, labels in batches:
        selected = labels != IGNORE_INDEX
        with autocast:
            logits = model(corrupted, positions=selected).float()
        runtime.check_outputs(logits, "held-out MLM")
        target, row = labels[selected], selected.nonzero()[:, 0]
        per_token = F.cross_entropy(logits, target, reduction="none")
        for out, values in ((loss, per_token), (correct, (logits.argmax(-1) == target).double()),
                            (count, torch.ones_like(per_token))):
            out.append(torch.zeros(len(labels), dtype=torch.float64, device=row.device)
                       .index_add_(0, row, values.double()).cpu().numpy())
    model.train(was_training)
    return tuple(np.concatenate(x) if x else np.zeros(0) for x in (loss, correct, count))


def evaluate(model, batches, autocast, prefix="eval"):
    """MLM loss and accuracy at the masked positions of fixed held-out batches."""
    loss, correct, count = (x.sum() for x in block_scores(model, batches, autocast))
    count = max(count, 1)
    return {f"{prefix}_loss": float(loss / count), f"{prefix}_accuracy": float(correct / count)}


# -----------------------------------------------------------------------------
# 3. What self-questioning sees: the picks in a sentence, a page of scores


def _look(method, model, tok, ids, machine, token_counts=None, progress=0.0):
    """What the method's rule sees and picks in a batch of token ids: the self-questioning scores of
    both kinds ({"loss": ..., "entropy": ...}, from one unmasked forward), the picks (the informative
    ones alone: no random share) and which tokens are candidates. `progress`: where in the method the
    rule believes it is (0 at its first step, 1 at its last), for a rule that follows a curriculum."""
    rule = replace(method, informative_fraction=1.0)
    context = MaskingContext(progress=progress, token_counts=token_counts)
    with machine.autocast:
        batch = rule_input(rule, model, tok, ids, torch.Generator(machine.device).manual_seed(0), context)
        picked = select(rule, batch)
        logits = batch.logits()  # the forward the rule asked for, else one now: the page shows both scores
    scores = {kind: score_tokens(logits, ids, kind) for kind in pictures.SCORE_NAMES}
    return scores, picked, batch.maskable


def _whose_picks(method, progress=0.0) -> str:
    """Whose picks a report shows, in words: the built-in rule with its settings, or your own."""
    if method.rule:
        return f"your rule {method.masking_fn}" + (f" (at progress {progress:g})" if progress else "")
    if method.select == "threshold":
        return f"self-questioning (every token with a {method.score} score above {method.threshold:g})"
    return (f"self-questioning (the top {100 * method.ratio:g}% of a passage's tokens by the {method.score} "
            "score)")


def show_picks(method, model, tok, text, machine, token_counts=None, progress=0.0) -> str:
    """The tokens the method's rule picks in one sentence (in brackets), and its highest scores.

    The built-in rule ranks by its score, so its highest scores are why it
    picks what it picks. A rule of your own (--masking-fn) may rank by
    anything: the line names its scores as the built-in score (--score),
    which the rule may or may not use. `progress` (0 to 1) is what a
    curriculum rule is told of where the method stands; the built-in rule
    does not read it.
    """
    ids = tok(text)["input_ids"].to(machine.device)
    scores, picked, maskable = _look(method, model, tok, ids, machine, token_counts, progress)
    words = tok.tokens(ids[0])
    marked = [f"[{w}]" if p else w for w, p in zip(words, picked[0].tolist())]
    if method.rule:
        at = f" at progress {progress:g}" if progress else ""
        rule = f"{method.masking_fn} picks{at} (brackets)"
        scored = f"highest {method.score} scores (the built-in score; your rule may use others)"
    else:
        rule = f"self-questioning picks ({method.score} score, brackets)"
        scored = "highest scores"
    by_score = scores[method.score][0].tolist()
    candidates = [(s, w) for w, s, m in zip(words, by_score, maskable[0].tolist()) if m]
    highest = ", ".join(f"{w} {s:.2f}" for s, w in sorted(candidates, reverse=True)[:8])
    return f"{rule}: {' '.join(marked)}\n  {scored}: {highest}"


def _shown_piece(token):
    """A token as a reader sees it on the page: without WordPiece's "##" or a word-start mark of
    byte-level BPE ("\u0120") or SentencePiece ("\u2581"); the page puts spaces between words itself."""
    return token.removeprefix("##").lstrip("\u0120\u2581") or token


def write_score_page(method, model, tok, blocks, machine, path, n=4, name=None, token_counts=None,
                     progress=0.0):
    """The score page (pictures.score_page) of the first n blocks: every token coloured by its
    self-questioning scores, a row of loss and a row of entropy per passage, and the tokens the
    method's rule picks (at `progress`) underlined. `name`: the model's, as the user gave it."""
    ids = blocks.batch(np.arange(min(n, len(blocks)))).to(machine.device)
    scores, picked, maskable = _look(method, model, tok, ids, machine, token_counts, progress)
    scores = {kind: s.float().cpu().numpy() for kind, s in scores.items()}
    joins = tok.continuation.to(ids.device)[ids].cpu().numpy()
    passages = [pictures.Passage([_shown_piece(t) for t in tok.tokens(row)], joins[i],
                                 {kind: s[i] for kind, s in scores.items()}, maskable[i].cpu().numpy(),
                                 picked[i].cpu().numpy())
                for i, row in enumerate(ids.cpu())]
    note = ("The colours are the built-in self-questioning scores; your rule may rank tokens by either, "
            "by neither, or by something else." if method.rule else "")
    return pictures.score_page(path, passages, model_name=name or "the model",
                               picks_by=_whose_picks(method, progress),
                               ranked_by=None if method.rule else method.score, note=note)


def method_start(method, model, tok, heldout, machine, out, *, n, batch_size, name, samples,
                 token_counts=None):
    """What train.py shows as the method begins: the rule's picks in each of the `samples` sentences and
    a page of held-out scores (out/scores.html), for a rule that questions the model; and the hardest
    tokens of the first `n` held-out blocks, masked and saved (out/HARDEST) so that every later
    evaluation, resumed runs' included, scores the same tokens. Returns those batches (None without
    held-out blocks). Process 0 alone calls it. `samples`: a sentence or a list of them."""
    samples = _sentences(samples)
    if method.rule:  # a rule of your own must be a pure function of its batch
        for text in samples:
            ids = tok(text)["input_ids"].to(machine.device)
            check_rule(method, model, tok, ids, MaskingContext(token_counts=token_counts))
    hard = None
    if len(heldout):
        hard = hardest_masks(method, model, tok, heldout, n, batch_size, machine)
        torch.save(hard, out / HARDEST)
    if method.masking == "informative" or method.rule:
        for text in samples:
            print(show_picks(method, model, tok, text, machine, token_counts))
        if len(heldout):
            write_score_page(method, model, tok, heldout, machine, out / "scores.html", name=name,
                             token_counts=token_counts)
            print(f"token scores of held-out passages: {out / 'scores.html'}")
    return hard


def method_end(method, model, tok, machine, *, step, samples, token_counts=None):
    """What train.py shows after the method's last step: the rule's picks in the same sentences again,
    by the trained model and at progress 1 (a curriculum rule's end), beside those method_start printed
    at progress 0. Returns the text it printed ("" for random masking, which picks no tokens by score).
    Process 0 alone calls it."""
    if not (method.masking == "informative" or method.rule):
        return ""
    lines = [f"the method's end (step {step}): the trained model's picks"
             + (", at progress 1" if method.rule else "")]
    lines += [show_picks(method, model, tok, text, machine, token_counts, progress=1.0)
              for text in _sentences(samples)]
    print("\n".join(lines))
    return "\n".join(lines)


def _sentences(samples) -> list:
    """A sentence or a list of sentences, as a list; anything else is a TypeError that says so."""
    if isinstance(samples, str):
        samples = [samples]
    if not samples or not all(isinstance(text, str) and text.strip() for text in samples):
        raise TypeError(f"samples: expected a sentence or a list of sentences, got {samples!r}")
    return list(samples)


def load_hardest(out, device):
    """The hardest-token batches method_start saved in the run folder `out` (None if it saved none).
    They cannot be made again (they are the hardest tokens of the model as the method began), so a
    damaged file is refused, naming it."""
    path = out / HARDEST
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch reports a truncated file in several ways, none of which names it
        raise SystemExit(f"{path}: cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                         "it fixed the held-out hardest tokens when the method began. Start a new run, or "
                         "delete it to resume without the hardest-token evaluation") from None


def text_mlm(model, tok, path, machine, block_length=128, blocks=256, cache_dir=None):
    """MLM loss and accuracy on a text file the model may never have seen: its first `blocks`
    blocks, masked at random with the fixed seed (as the held-out evaluation is)."""
    length = min(block_length, model.config.max_positions)
    every, _, _ = data.load_corpus(str(path), tok, length, model.config.max_positions, 0.0, cache_dir)
    masks = random_masks(tok, every, blocks, 32, machine.device)
    return {"file": str(path), "blocks": min(blocks, len(every)), "block_length": length,
            **evaluate(model, masks, machine.autocast, "mlm")}


# -----------------------------------------------------------------------------
# 4. BLiMP: linguistic knowledge by pseudo-log-likelihood
#
# Warstadt et al. (TACL 2020): 67 paradigms of minimal pairs such as
#     good: "Who should Derek hug after shocking Richard?"
#     bad:  "Who should Derek hug Richard after shocking?"
# A masked LM scores a sentence by its pseudo-log-likelihood (Salazar et al.,
# ACL 2020), PLL(s) = sum over its tokens t of log p(t | s with t masked), and
# is right on a pair when PLL(good) > PLL(bad). The BLiMP paper reports the
# mean over paradigms; also per field (morphology, syntax, semantics,
# syntax_semantics).

BLIMP_FIELDS = ("sentence_good", "sentence_bad", "field", "UID")


def read_blimp(data_root=None, pairs_per_paradigm=None) -> dict:
    """{paradigm: {"field": ..., "pairs": [(good, bad), ...]}}: the first N pairs of every
    data_root/blimp/UID.jsonl (all of them when N is None), so that any two tools score the same."""
    folder = data.find_data_root(data_root) / "blimp"
    files = sorted(p for p in folder.glob("*.jsonl") if p.name != "models_summary.jsonl")
    if not files:
        raise FileNotFoundError(f"{folder}: no BLiMP files (UID.jsonl, one per paradigm)")
    paradigms = {}
    for path in files:
        pairs, field = [], None
        with open(path, "rb") as lines:
            for where, row in data.json_rows(path, lines):
                if pairs_per_paradigm is not None and len(pairs) == pairs_per_paradigm:
                    break
                if any(not isinstance(row.get(k), str) for k in BLIMP_FIELDS):
                    raise ValueError(f"{where}: expected an object with the strings "
                                     f"{', '.join(BLIMP_FIELDS)}")
                pairs.append((row["sentence_good"], row["sentence_bad"]))
                field = row["field"].replace("/", "_")  # one file spells syntax_semantics "syntax/semantics"
        if not pairs:
            raise ValueError(f"{path}: no pairs (the file is empty)")
        paradigms[path.stem] = {"field": field, "pairs": pairs}
    return paradigms


@torch.no_grad()
def pseudo_log_likelihoods(model, tok, sentences, machine, tokens_per_batch=4096, quiet=True, name=None):
    """PLL of every sentence (float64): the sum over its tokens (special ones aside) of
    log p(token | the sentence with that token masked). A sentence longer than the model's
    positions is a ValueError naming it: `name(i)` says what sentence i is (else "sentence i+1").

    Each token is masked in a copy of its own. The copies of all sentences of
    one length go through the model together, in batches of about
    `tokens_per_batch` tokens, without padding, and the vocabulary is
    projected only at the masked position of each copy.
    """
    was_training = model.training
    model.eval()
    ids = [e.ids for e in tok.tok.encode_batch(list(sentences))]
    lengths = np.array([len(i) for i in ids])
    limit = model.config.max_positions
    if (too_long := np.flatnonzero(lengths > limit)).size:
        i = int(too_long[0])
        raise ValueError(f"{name(i) if name else f'sentence {i + 1}'} is {lengths[i]} tokens, more than the "
                         f"model's {limit} positions: {_shown(sentences[i])}")
    pll = np.zeros(len(sentences))
    for length in tqdm(np.unique(lengths), desc="pseudo-log-likelihoods", disable=quiet, leave=False):
        members = np.flatnonzero(lengths == length)
        group = torch.tensor([ids[i] for i in members])  # (sentences, length)
        sentence, position = (~special_tokens_mask(group, tok)).nonzero(as_tuple=True)  # one copy per token
        per_batch = max(1, tokens_per_batch // int(length))
        for start in range(0, len(sentence), per_batch):
            s, p = sentence[start:start + per_batch], position[start:start + per_batch]
            copies = group[s].clone()
            copies[torch.arange(len(s)), p] = tok.mask_id
            flat = torch.arange(len(s)) * int(length) + p  # the masked token of each copy, flattened
            with machine.autocast:
                logits = model(copies.to(machine.device), positions=flat.to(machine.device))
            runtime.check_outputs(logits, "pseudo-log-likelihoods")
            chosen = logits.float().log_softmax(-1).gather(-1, group[s, p].to(machine.device)[:, None])
            np.add.at(pll, members[s.numpy()], chosen.squeeze(1).double().cpu().numpy())
    model.train(was_training)
    return pll


def blimp(model, tok, paradigms, machine, quiet=True) -> dict:
    """Accuracy on BLiMP pairs: the mean over paradigms (as the BLiMP paper reports), the mean per
    field, per paradigm, and whether each pair was right (`correct`, for paired comparisons)."""
    sentences = [s for p in paradigms.values() for pair in p["pairs"] for s in pair]
    pairs = [(name, k) for name, p in paradigms.items() for k in range(len(p["pairs"]))]
    side = ("grammatical", "ungrammatical")
    which = lambda i: (f"BLiMP paradigm {pairs[i // 2][0]}, pair {pairs[i // 2][1] + 1} "
                       f"({side[i % 2]} sentence)")
    pll = pseudo_log_likelihoods(model, tok, sentences, machine, quiet=quiet, name=which).reshape(-1, 2)
    correct, start = {}, 0
    for name, p in paradigms.items():
        correct[name] = (pll[start:start + len(p["pairs"]), 0] > pll[start:start + len(p["pairs"]), 1])
        start += len(p["pairs"])
    accuracy = {name: float(c.mean()) for name, c in correct.items()}
    fields = sorted({p["field"] for p in paradigms.values()})
    return {"accuracy": float(np.mean(list(accuracy.values()))),
            "fields": {f: float(np.mean([accuracy[n] for n, p in paradigms.items() if p["field"] == f]))
                       for f in fields},
            "paradigms": accuracy, "pairs": sum(len(p["pairs"]) for p in paradigms.values()),
            "correct": {name: c.astype(int).tolist() for name, c in correct.items()}}


# -----------------------------------------------------------------------------
# 5. Command line


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="What a checkpoint knows: fill the masks of sentences, score "
                                             "BLiMP's minimal pairs, or the MLM loss on a text file.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("text", nargs="*", help="sentence(s) with [MASK] or <mask> where a word should go")
    runtime.model_option(ap, default="runs/demo",
                         help="checkpoint folder, train.py run folder, hub id, or one of: "
                              f"{', '.join(checkpoint.DEFAULT_MODELS)}")
    ap.add_argument("--fresh-head-ok", action="store_true",
                    help="probe a model without a trained MLM head (the raw MiniLM) through a head drawn at "
                         "random, its numbers flagged; refused otherwise")
    ap.add_argument("--top-k", type=runtime.number(int, at_least=1), default=5,
                    help="fillers to show per mask")
    ap.add_argument("--blimp", action="store_true", help="accuracy on BLiMP's minimal pairs, by PLL")
    ap.add_argument("--pairs-per-paradigm", type=runtime.number(int, at_least=1), default=100,
                    help="the first N pairs of each of the 67 paradigms (the files hold 500)")
    runtime.data_root_option(ap, holds="blimp/")
    ap.add_argument("--text-file", "--text", dest="text_file", metavar="FILE",
                    help="MLM loss and accuracy on this text file (documents separated by blank lines), "
                         "with a fixed seeded mask")
    ap.add_argument("--blocks", type=runtime.number(int, at_least=1), default=256,
                    help="blocks of the text file to score")
    ap.add_argument("--block-length", type=runtime.number(int, at_least=3), default=128,
                    help="tokens per block of the text file (at most the model's positions)")
    runtime.machine_options(ap, precisions=("auto", "bf16", "fp32"),
                            precision_help="auto: bf16 where the device computes it natively (it only "
                                           "ranks), else fp32")
    ap.add_argument("--json", metavar="FILE", help="write the results here")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if not (args.text or args.blimp or args.text_file):
        ap.error("give sentences with a mask, --blimp, or --text FILE")
    return args


def load_probed(args, machine):
    """The model to probe, and the MLM-head modules it has no trained weights for (model.fresh_modules).
    Those are drawn at random, and so would be every filler, BLiMP score and MLM loss: refused unless
    --fresh-head-ok."""
    try:
        with warnings.catch_warnings():  # the refusal below says it, or the note of main
            warnings.filterwarnings("ignore", message=".*has no MLM head")
            model = MaskedLM.from_pretrained(args.model).to(machine.device)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: --model {args.model}: {e}") from None
    fresh = list(getattr(model, "fresh_modules", []))
    if fresh and not args.fresh_head_ok:
        raise SystemExit(f"error: --model {args.model} has no trained MLM head ({', '.join(fresh)} would be "
                         "drawn at random), so its fillers, BLiMP scores and MLM loss would measure a random "
                         "head, another at every run. Probe a checkpoint with a trained head (a train.py "
                         "run; --head-steps trains one), or add --fresh-head-ok to see the random head's "
                         "numbers, flagged")
    return model, fresh


def main(argv=None):
    args = parse_args(argv)
    machine = runtime.setup(args.device, "fp32")
    if args.precision == "bf16" or (args.precision == "auto" and runtime.native_bf16(machine.device)):
        machine = replace(machine, precision="bf16")
    model, fresh = load_probed(args, machine)
    tok = Tokenizer(args.model)
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {model.config.model_type}, {model.config.num_hidden_layers} layers, "
          f"hidden {model.config.hidden_size}, {n / 1e6:.1f}M parameters | "
          f"{machine.device}, {machine.precision}")
    flag = " [random MLM head]" if fresh else ""
    if fresh:
        print(f"note: the MLM head ({', '.join(fresh)}) was drawn at random (--fresh-head-ok): every number "
              "below measures that random head, not what the model learned")
    results = {"model": str(args.model), "precision": machine.precision, "fresh_head": bool(fresh)}
    try:
        for text in args.text:
            fills = fill_mask(model, tok, text, args.top_k)
            print(text + flag)
            for i, fillers in enumerate(fills):
                print(f"  mask {i + 1}: " + "  ".join(f"{w} ({p:.3f})" for w, p in fillers))
        if args.blimp:
            paradigms = read_blimp(args.data_root, args.pairs_per_paradigm)
            t0 = time.time()
            results["blimp"] = blimp(model, tok, paradigms, machine, quiet=args.quiet)
    except (OSError, ValueError) as e:  # a malformed file, a text or pair longer than the positions, no mask
        raise SystemExit(f"error: {e}") from None
    if args.blimp:
        results["blimp"]["seconds"] = round(time.time() - t0, 1)
        report = results["blimp"]
        # a paradigm with fewer pairs than asked is scored on all it has, and says so
        short = {name: len(p["pairs"]) for name, p in paradigms.items()
                 if len(p["pairs"]) < args.pairs_per_paradigm}
        report.update(pairs_per_paradigm=args.pairs_per_paradigm, short_paradigms=short)
        print(f"BLiMP: {100 * report['accuracy']:.1f}% (mean over {len(paradigms)} paradigms, "
              f"{report['pairs']} pairs, {report['seconds']:.0f} s){flag}")
        if short:
            print(f"  note: {len(short)} of the {len(paradigms)} paradigms hold fewer than the "
                  f"{args.pairs_per_paradigm} pairs asked, and are scored on all they have: "
                  + ", ".join(f"{name} ({k})" for name, k in short.items()))
        for field, accuracy in report["fields"].items():
            print(f"  {field:18s} {100 * accuracy:.1f}")
        for name, accuracy in report["paradigms"].items():
            print(f"    {name:55s} {100 * accuracy:.1f}")
    if args.text_file:
        try:
            results["text"] = text_mlm(model, tok, args.text_file, machine, args.block_length, args.blocks)
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
        t = results["text"]
        print(f"{t['file']}: MLM loss {t['mlm_loss']:.3f}, accuracy {t['mlm_accuracy']:.3f} "
              f"({t['blocks']} blocks of {t['block_length']}, 15% masked at random with a fixed seed){flag}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_json(args.json, results)
        print(f"results: {args.json}")
    return results


if __name__ == "__main__":
    main()
