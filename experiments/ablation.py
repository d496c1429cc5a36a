"""
ablation.py -- does self-evolution beat random masking? The paper's ablation on your model and hardware.

    python -m experiments.ablation --preset small   # a smoke test: MiniLM + Wikipedia, 2 CPU cores, < 1 hour
    python -m experiments.ablation --preset study   # with the power to see an effect: 2 CPU cores, hours
    python -m experiments.ablation --preset full    # BERT-base, one GPU, a few hours

From one starting checkpoint, one corpus, one budget of steps and one seed, it
1. continues pretraining several ways (the paper's Table 3 ablation, and the
   authors' own rule):
     (a) random masking + cross-entropy          -- the baseline, BERT's MLM
     (b) informative masking + cross-entropy     -- SE stage 1 only
     (c) random masking + token-specific LS      -- SE stage 2 only
     (d) self-evolution: informative + token-specific LS
     (e) the authors' rule: an offline pass, every token with loss > 0.1
         masked, TLS (--variants; the study preset runs all five)
2. probes the start and every variant (probe.py): BLiMP's minimal pairs and
   held-out MLM on fixed masks (random positions, and the tokens the start
   model finds hardest), at the end and at kept checkpoints along the way;
3. fine-tunes the starting checkpoint and the variants on a few GLUE/SuperGLUE
   tasks, several seeds each (finetune.py);
4. writes markdown tables (mean +/- std over the seeds, an average column,
   the pretraining cost; each variant's paired difference from (a) with a 95%
   bootstrap interval) and plots of held-out MLM loss and BLiMP over the steps.

Each stage runs the project's own command lines, printed as they run: train.py
in a process of its own, finetune.py's main. Every stage stores its result in
a folder of its own under --out, with the record of what it was made from (the
content of its model and files, and its settings: checkpoint.provenance), and is
skipped when that record matches, so a stopped ablation continues where it
stopped when run again; a stage made from anything else is refused, naming
what differs:

    out/provenance.json                   the ablation's record (start model, corpus, BLiMP, settings)
    out/pretrain/<name>/                  summary.json, provenance.json, run/ (train.py's run folder)
    out/probe/<name>-<step>/              probe.json, provenance.json
    out/finetune/<name>/<task>/           report.json, provenance.json
A checkpoint without an MLM head (MiniLM) first gets train.py's random-masking
steps for its head (--head-steps), and that model is the common start of all variants.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import checkpoint
import data
import finetune
import glue
import probe
import runtime
import self_evolution as se
from experiments.stats import DRAWS, cell, paired_blimp, paired_mlm, paired_seeds
from checkpoint import latest_checkpoint, resolve_checkpoint
from model import EncoderConfig, MaskedLM
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent.parent  # the repository: run as python -m experiments.ablation

VARIANTS = {  # name -> (what it is, train.py options)
    "random": ("(a) random masking + cross-entropy", ["--masking", "random", "--smoothing", "none"]),
    "informative": ("(b) informative masking + cross-entropy",
                    ["--masking", "informative", "--smoothing", "none"]),
    "tls": ("(c) random masking + token-specific LS", ["--masking", "random", "--smoothing", "token"]),
    "se": ("(d) self-evolution: informative + token-specific LS",
           ["--masking", "informative", "--smoothing", "token"]),
    # The authors' code: a separate scoring pass, every token whose loss is above 0.1 masked (no budget),
    # all of them replaced by the mask token, TLS with alpha 0.1 (docs/paper.md).
    "authors": ("(e) the authors' rule: offline pass, loss > 0.1, TLS",
                ["--masking", "informative", "--smoothing", "token", "--questioning", "offline",
                 "--select", "threshold", "--threshold", "0.1"]),
}
PAPER = ["random", "informative", "tls", "se"]  # the paper's Table 3

PRESETS = {
    # 2 CPU cores, under an hour. Its numbers are a smoke test: 60 steps of
    # continued pretraining and a few hundred fine-tuning examples per task
    # cannot separate methods that differ by 1-2 points.
    "small": dict(model="minilm", corpus=["wiki"], head_steps=100, head_lr=2e-3,
                  steps=60, block_length=128, batch_size=16, lr=1e-4, warmup=10,
                  tasks=["CoLA", "MRPC", "STS-B", "RTE", "CB"], seeds=[1, 2, 3],
                  ft_epochs=2, ft_lr=1e-4, ft_batch_size=16, max_train=256, max_length=96),
    # 2 CPU cores, a few hours: a start model whose MLM head has learned (the
    # head's steps read off its accuracy curve, results/ablation-study), five times the
    # held-out text, 300 steps of every variant, and instruments with power:
    # BLiMP (100 pairs of each paradigm) and held-out MLM, compared pair by
    # pair (block by block) with (a). Its fine-tuning is the small preset's,
    # still a smoke test.
    "study": dict(model="minilm", corpus=["wiki"], head_steps=800, head_lr=2e-3,
                  steps=300, block_length=128, batch_size=16, lr=1e-4, warmup=10, heldout=0.05,
                  variants=list(VARIANTS), eval_blocks=256, blimp_pairs=100, curve_every=100, curve_pairs=20,
                  tasks=["CoLA", "MRPC", "STS-B", "RTE", "CB"], seeds=[1, 2, 3],
                  ft_epochs=2, ft_lr=1e-4, ft_batch_size=16, max_train=256, max_length=96),
    # One GPU: BERT-base (hub id, cached once), its own MLM head, the paper's
    # learning rate scaled for a short run, full training sets and five seeds.
    "full": dict(model="bert-base-uncased", corpus=["wiki"], head_steps=0, head_lr=1e-3,
                 steps=2000, block_length=128, batch_size=64, lr=5e-5, warmup=200,
                 tasks=["CoLA", "MRPC", "STS-B", "RTE", "CB", "SST-2"], seeds=[1, 2, 3, 4, 5],
                 ft_epochs=3, ft_lr=2e-5, ft_batch_size=32, max_train=0, max_length=128),
}


def parse_args(argv=None):
    count, positive = runtime.number(int, at_least=0), runtime.number(int, at_least=1)
    rate = runtime.number(float, above=0)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small",
                    help="defaults for the options below (options given explicitly win)")
    runtime.model_option(ap, default=None,
                         help="starting checkpoint (folder, run folder, hub id, or 'minilm')")
    ap.add_argument("--corpus", nargs="+", help="text files for continued pretraining, or 'wiki'")
    ap.add_argument("--head-steps", type=count,
                    help="random-masking steps that train a missing MLM head (0 if the checkpoint has one)")
    ap.add_argument("--head-lr", type=rate, help="learning rate of the fresh MLM head during --head-steps")
    ap.add_argument("--steps", type=positive, help="continued-pretraining steps of each variant")
    ap.add_argument("--block-length", type=runtime.number(int, at_least=3))
    ap.add_argument("--batch-size", type=positive)
    ap.add_argument("--lr", type=rate, help="continued-pretraining learning rate")
    ap.add_argument("--warmup", type=count, help="continued-pretraining learning-rate warm-up steps")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=PAPER, metavar="VARIANT",
                    help=f"which of {', '.join(VARIANTS)}; random, (a), is the baseline of the comparisons")
    ap.add_argument("--heldout", type=runtime.number(float, above=0, below=1), default=0.01,
                    help="share of the corpus held out for the MLM evaluations")
    ap.add_argument("--eval-blocks", type=positive, default=64,
                    help="held-out blocks the MLM evaluations use")
    ap.add_argument("--blimp-pairs", type=count, default=0,
                    help="BLiMP pairs of each paradigm scored for the start and every variant (0: none)")
    ap.add_argument("--curve-every", type=count, default=0,
                    help="keep a checkpoint of every variant each this many steps, and probe it (0: none)")
    ap.add_argument("--curve-pairs", type=count, default=20,
                    help="BLiMP pairs of each paradigm along the curve")
    ap.add_argument("--tasks", nargs="+", choices=sorted(glue.TASKS), metavar="TASK")
    runtime.seeds_option(ap, help="fine-tuning seeds")
    ap.add_argument("--ft-epochs", type=positive)
    ap.add_argument("--ft-lr", type=rate)
    ap.add_argument("--ft-batch-size", type=positive)
    ap.add_argument("--max-train", type=count, help="fine-tuning examples per task (0: all)")
    ap.add_argument("--max-length", type=positive, help="fine-tuning tokens per input")
    runtime.data_root_option(ap)
    ap.add_argument("--seed", type=int, default=0,
                    help="continued-pretraining seed (the same for every variant)")
    runtime.machine_options(ap, precisions=())
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=None, help="results folder; None: runs/ablation-<preset>")
    ap.add_argument("--force", action="store_true",
                    help="allow --out to replace a result committed under results/")
    ap.add_argument("--quiet", action="store_true")
    args = runtime.parse_with_preset(ap, PRESETS, argv, default="small")
    if "random" not in args.variants:
        ap.error("--variants must include random: (a) is what the others are compared with")
    args.variants = [v for v in VARIANTS if v in args.variants]  # in the table's order
    args.out = Path(args.out or f"runs/ablation-{args.preset}")
    committed = args.out.resolve().is_relative_to(ROOT / "results") and (args.out / "results.json").exists()
    if committed and not args.force:
        ap.error(f"--out {args.out} holds a committed result: write elsewhere (the default is "
                 f"runs/ablation-{args.preset}), or add --force to replace it")
    return args


# -----------------------------------------------------------------------------
# 0. What a stage is made from (transfer.py's stages use these too)
#
# A stage is reused only when checkpoint.reusable finds its record, beside its
# result, equal to what it would be made from now; one made from anything else
# is refused, naming what differs. A stage without a record did not finish:
# it runs (a train.py run it left resumes).

# Options that say where things are, or how a command shows itself, not what a stage makes: what the files
# they name hold is among the record's inputs, by content. --device is left out too, so that a stopped
# study may continue on another machine (its last digits may differ; the report names the hardware).
PLACES = {"model", "out", "save", "data-root", "cache-dir", "device", "quiet", "resume",
          "prompt-init", "distill-from", "target-prompt", "teachers"}


def settings_of(argv):
    """A stage's command line as {option: value}, less the options in PLACES."""
    settings, key = {}, None
    for word in argv:
        if word.startswith("--"):
            key, settings[word[2:]] = word[2:], True
        else:
            settings[key] = word if settings[key] is True else f"{settings[key]} {word}"
    return {k: v for k, v in settings.items() if k not in PLACES}


def stage_done(folder, record, what, result):
    """Whether the stage in `folder` was made from `record` and its result is there to reuse; one made from
    anything else is refused (checkpoint.reusable)."""
    return checkpoint.reusable(folder, record, what) and (Path(folder) / result).is_file()


def corpus_files(args):
    """The corpus files, for a record (checkpoint.provenance hashes them); 'wiki' is the installed
    package's file (found as data finds it), so that another version of the package is another corpus."""
    return [data._wiki_file() if str(s) == "wiki" else Path(s).expanduser() for s in args.corpus]


def task_files(args, task):
    """The files finetune.py reads of a task, for a record: its train and dev splits."""
    folder = glue.task_folder(task, args.data_root)
    return [folder / glue.file_name(task, split) for split in ("train", "dev")]


def blimp_folder(args):
    folder = data.find_data_root(args.data_root) / "blimp"
    return folder if folder.is_dir() else "none"


SETTINGS = ("model", "corpus", "head_steps", "head_lr", "steps", "block_length", "batch_size", "lr",
            "warmup", "seed", "seeds", "ft_epochs", "ft_lr", "ft_batch_size", "max_train", "max_length",
            "variants", "heldout", "eval_blocks", "blimp_pairs", "curve_every", "curve_pairs")


def check_settings(args):
    """Stored stages are reused only by a run of the same ablation: the same settings and inputs of the
    same content (the start model, the corpus, the BLiMP files; the task files are in each fine-tuning
    stage's record, so that tasks may be added). Anything else would mix two experiments: it is refused
    at once, naming what differs, before any stage runs; each stage checks its own record too.
    Refused, not redone: the stages took hours, and another --out keeps both experiments."""
    if (args.out / "settings.json").exists() and not (args.out / checkpoint.PROVENANCE).exists():
        raise SystemExit(f"{args.out} holds an ablation of an earlier version, which did not record what its "
                         "stages were made from: choose another --out, or delete it to start over")
    args.start = resolve_checkpoint(args.model)  # once: a run folder that is still training moves on
    inputs = {"model": args.start, "corpus": corpus_files(args)}
    if args.blimp_pairs or args.curve_every:
        inputs["blimp"] = blimp_folder(args)
    record = checkpoint.provenance(inputs, {k: getattr(args, k) for k in SETTINGS})
    if not checkpoint.reusable(args.out, record, "an ablation"):
        checkpoint.write_record(args.out, record)


# -----------------------------------------------------------------------------
# 1. Continued pretraining: the common start, then the variants


def pretrain(args, name, model, options, steps, head_steps=0):
    """One train.py run in out/pretrain/<name>/run; returns its summary, kept beside it with the record of
    what it was made from (the model it starts from, the corpus, its options), and reused on a match."""
    stage = args.out / "pretrain" / name
    run = stage / "run"
    eval_every = max(1, (steps + head_steps) // 4)
    if args.curve_every:  # a study: the head's accuracy curve every 50 steps, a variant's 20 points
        eval_every = 50 if not steps else max(1, steps // 20)
    argv = ["--model", str(model), "--corpus", *args.corpus, "--block-length", str(args.block_length),
            "--batch-size", str(args.batch_size), "--steps", str(steps), "--head-steps", str(head_steps),
            "--head-lr", str(args.head_lr), "--lr", str(args.lr), "--warmup", str(args.warmup),
            "--seed", str(args.seed), "--device", args.device,
            "--out", str(run), "--heldout", str(args.heldout), "--eval-blocks", str(args.eval_blocks),
            "--eval-every", str(eval_every),
            "--log-every", str(max(1, (steps + head_steps) // 20)), *options]
    keep = args.curve_every if steps else 0  # the curve of a variant, not of the start
    argv += ["--save-every", str(keep), "--keep-every", str(keep)] if keep else ["--save-every", str(10 ** 9)]
    if args.cache_dir:
        argv += ["--cache-dir", args.cache_dir]
    if args.quiet:
        argv.append("--quiet")
    record = checkpoint.provenance({"model": model, "corpus": corpus_files(args)},
                                settings_of(argv))
    if stage_done(stage, record, f"the pretraining stage {name!r}", "summary.json"):
        return json.loads((stage / "summary.json").read_text())
    if (run / "latest").exists():  # a run this stage began, stopped: train.py checks it resumes alike
        argv.append("--resume")
    print(f"\n=== continued pretraining: {name} ===\n    python train.py {' '.join(argv)}", flush=True)
    t0 = time.time()
    run_script("train.py", argv)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    summary = {"name": name, "checkpoint": str(latest_checkpoint(run)), "minutes": (time.time() - t0) / 60,
               "tokens": (steps + head_steps) * args.batch_size * args.block_length,
               "evals": [e for e in log if "eval_loss" in e]}
    checkpoint.write_json(stage / "summary.json", summary)
    checkpoint.write_record(stage, record)
    return summary


def run_script(script, argv):
    """`python <script> <argv>` in a process of its own; stop the ablation if it fails."""
    child = subprocess.Popen([sys.executable, str(ROOT / script), *argv])
    try:
        code = child.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the child too: let it save its checkpoint, then stop
        child.wait()
        print(f"interrupted: the stage of python {script} is not done (run the ablation again to continue "
              "it)", file=sys.stderr)
        raise SystemExit(130) from None
    if code != 0:  # 130: interrupted (it saved a checkpoint, and the next run resumes from it)
        raise SystemExit(f"python {script} exited with status {code}; the stage is not done "
                         "(run the ablation again to continue it)")


def pretrain_all(args):
    """The start (with --head-steps for a missing MLM head) and the variants from it."""
    needs_head = bool(MaskedLM.from_pretrained(args.start).fresh_modules) if args.head_steps else False
    start = {"name": "start", "checkpoint": str(args.start), "minutes": 0.0, "tokens": 0, "evals": []}
    if needs_head:
        start = pretrain(args, "start", args.start, VARIANTS["random"][1], 0, args.head_steps)
    variants = {name: pretrain(args, name, start["checkpoint"], VARIANTS[name][1], args.steps)
                for name in args.variants}
    return start, variants


# -----------------------------------------------------------------------------
# 2. Probing every model: BLiMP and held-out MLM, along the way and at the end


def probe_all(args, start, variants):
    """{model: [its probe at each kept checkpoint, the last one last]}; each kept in out/probe/.

    Every model is scored on the same things, so that two can be compared
    pair by pair and block by block: the first N pairs of each BLiMP paradigm,
    and the same held-out blocks, masked once at random and once at the tokens
    the *start* model finds hardest (what SE sets out to learn).
    """
    if not (args.blimp_pairs or args.curve_every):
        return {}
    points = {"start": [(0, start["checkpoint"])]}
    for name in variants:
        kept = sorted(Path(variants[name]["checkpoint"]).parent.glob("step-*"))  # of the run it names
        points[name] = [(int(p.name.removeprefix("step-")), p) for p in kept]
    blimp_root = data.find_data_root(args.data_root) / "blimp"
    if not blimp_root.is_dir():
        print(f"no BLiMP data in {blimp_root}: the probes score held-out MLM only")
    machine = runtime.setup(args.device, "fp32")
    ranking = replace(machine, precision="bf16") if runtime.native_bf16(machine.device) else machine  # BLiMP
    tok, masks, probes = Tokenizer(start["checkpoint"]), None, {}
    for name, checkpoints in points.items():
        for step, folder in checkpoints:
            stage = args.out / "probe" / f"{name}-{step:07d}"
            pairs = args.blimp_pairs if step == checkpoints[-1][0] else args.curve_pairs
            record = probe_record(args, folder, start["checkpoint"], pairs)
            if not stage_done(stage, record, f"the probe of {name} at step {step}", "probe.json"):
                if masks is None:
                    masks = fixed_masks(args, tok, start["checkpoint"], machine)
                print(f"\n=== probing {name} at step {step} ===", flush=True)
                t0 = time.time()
                model = MaskedLM.from_pretrained(folder).to(machine.device)
                result = {"step": step, "checkpoint": str(folder)}
                for kind, batches in masks.items():
                    scores = probe.block_scores(model, batches, machine.autocast)
                    result[kind] = dict(zip(("loss", "correct", "count"), (s.tolist() for s in scores)))
                if pairs and blimp_root.is_dir():
                    paradigms = probe.read_blimp(args.data_root, pairs)
                    result["blimp"] = probe.blimp(model, tok, paradigms, ranking, quiet=args.quiet)
                    print(f"BLiMP {100 * result['blimp']['accuracy']:.1f}% ({pairs} pairs of each paradigm)")
                result["minutes"] = (time.time() - t0) / 60
                stage.mkdir(parents=True, exist_ok=True)
                checkpoint.write_json(stage / "probe.json", result)
                checkpoint.write_record(stage, record)
            probes.setdefault(name, []).append(json.loads((stage / "probe.json").read_text()))
    return probes


def probe_record(args, model, start, pairs):
    """What a probe is made from: the model probed, the start model (its hardest tokens are masked), the
    corpus (the held-out blocks), the BLiMP files, and the settings that choose what is scored."""
    inputs = {"model": model, "start": start,
              "corpus": corpus_files(args), "blimp": blimp_folder(args) if pairs else "unused"}
    settings = {k: getattr(args, k) for k in ("corpus", "block_length", "heldout", "eval_blocks", "seed")}
    return checkpoint.provenance(inputs, {**settings, "pairs": pairs})


def fixed_masks(args, tok, start, machine):
    """The held-out blocks of train.py's split, masked at random and at the start model's hardest tokens."""
    start_model = MaskedLM.from_pretrained(start).to(machine.device)
    _, heldout, _ = data.load_corpus(args.corpus, tok, args.block_length, start_model.config.max_positions,
                                     args.heldout, args.cache_dir, args.seed)
    n = args.eval_blocks
    return {"random": probe.random_masks(tok, heldout, n, 16, machine.device),
            "hardest": probe.hardest_masks(se.Method(), start_model, tok, heldout, n, 16, machine)}


# -----------------------------------------------------------------------------
# 3. Fine-tuning every model on every task, several seeds


def finetune_all(args, models):
    """finetune.py for each (model, task); each report kept in out/finetune/<model>/<task>/, with the record
    of what it was made from (the model, the task's files, the options)."""
    positions = EncoderConfig.from_json(args.start / "config.json").max_positions
    max_length = min(args.max_length, positions)  # the variants share the start model's architecture
    if max_length < args.max_length:
        print(f"note: --max-length {args.max_length} is more than the model's {positions} positions: "
              f"fine-tuning uses {max_length}")
    common = ["--seeds", *map(str, args.seeds), "--epochs", str(args.ft_epochs), "--lr", str(args.ft_lr),
              "--batch-size", str(args.ft_batch_size), "--max-train", str(args.max_train),
              "--max-length", str(max_length), "--device", args.device]
    common += ((["--data-root", str(args.data_root)] if args.data_root else [])
               + (["--quiet"] if args.quiet else []))
    reports = {}
    for name, summary in models.items():
        for task in args.tasks:
            stage = args.out / "finetune" / name / task
            record = checkpoint.provenance({"model": summary["checkpoint"], "data": task_files(args, task)},
                                           {"task": task, **settings_of(common)})
            if not stage_done(stage, record, f"the fine-tuning of {name} on {task}", "report.json"):
                argv = ["--model", str(summary["checkpoint"]), "--task", task, *common,
                        "--out", str(stage / "report.json")]
                print(f"\n=== fine-tuning {name} on {task} ({len(args.seeds)} seeds) ===\n"
                      f"    python finetune.py {' '.join(argv)}")
                finetune.main(argv)
                checkpoint.write_record(stage, record)
            (report,) = json.loads((stage / "report.json").read_text())
            reports[name, task] = {"variant": name, **report}
    return reports


# -----------------------------------------------------------------------------
# 4. The tables and the plots


def task_score(best):
    """One number per task and seed: its metric, or the mean of its two (MRPC, STS-B, CB),
    as GLUE averages them."""
    return 100 * float(np.mean([v for k, v in best.items() if k != "epoch"]))


def table(args, start, variants, reports):
    models = {"start": ("start checkpoint (no continued pretraining)", start),
              **{k: (VARIANTS[k][0], v) for k, v in variants.items()}}
    head = ["model", *args.tasks, "average", "pretraining tokens", "pretraining min",
            "held-out MLM loss (random / hardest)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, (label, summary) in models.items():
        # (tasks, seeds)
        per_seed = np.array([[task_score(r["best"]) for r in reports[name, t]["runs"]] for t in args.tasks])
        cells = [f"{m:.1f} ± {s:.1f}" for m, s in zip(per_seed.mean(1), per_seed.std(1))]
        average = per_seed.mean(0)  # each seed's average over tasks
        last = summary["evals"][-1] if summary["evals"] else {}
        hard = f"{last['hard_loss']:.3f}" if "hard_loss" in last else "-"
        loss = f"{last['eval_loss']:.3f} / " + hard if last else "-"
        rows.append(f"| {label} | " + " | ".join(cells) + " | "
                    f"**{average.mean():.1f} ± {average.std():.1f}** | "
                    f"{summary['tokens']:,} | {summary['minutes']:.1f} | {loss} |")
    return "\n".join(rows)


def seed_averages(reports, name, tasks):
    """Each seed's average over the tasks: the table's average column, seed by seed."""
    return np.array([[task_score(r["best"]) for r in reports[name, t]["runs"]] for t in tasks]).mean(0)


def study_tables(args, probes, reports):
    """Every model's probes at the end, then each variant's paired difference from (a)."""
    label = {"start": "start checkpoint", **{k: v[0] for k, v in VARIANTS.items()}}
    end = {name: p[-1] for name, p in probes.items()}
    rows = ["| model | BLiMP (%) | held-out MLM loss / accuracy, random positions | "
            "the start model's hardest tokens | downstream average |", "|---|---|---|---|---|"]
    for name, p in end.items():
        blimp = f"{100 * p['blimp']['accuracy']:.2f}" if "blimp" in p else "-"
        rows.append(f"| {label[name]} | {blimp} | {mlm_cell(p['random'])} | {mlm_cell(p['hardest'])} | "
                    f"{seed_averages(reports, name, args.tasks).mean():.1f} |")
    rows += ["", "| difference from (a), 95% interval | BLiMP (points) | MLM loss, random positions | "
             "MLM loss, hardest tokens | downstream average (points, over seeds) |", "|---|---|---|---|---|"]
    base = end["random"]
    for name in args.variants[1:]:
        rng = np.random.default_rng(0)
        p = end[name]
        blimp = cell(*paired_blimp(base["blimp"], p["blimp"], rng), 2) if "blimp" in p else "-"
        losses = [cell(*paired_mlm(base[kind], p[kind], rng), 3) for kind in ("random", "hardest")]
        downstream = paired_seeds(*(seed_averages(reports, n, args.tasks) for n in ("random", name)), rng)
        rows.append(f"| {label[name]} | {blimp} | {' | '.join(losses)} | {cell(*downstream, 2)} |")
    return "\n".join(rows)


def mlm_cell(scores):
    count = max(1.0, sum(scores["count"]))
    return f"{sum(scores['loss']) / count:.3f} / {sum(scores['correct']) / count:.3f}"


def blimp_on(p, pairs):
    """BLiMP accuracy of a probe on the first `pairs` pairs of each paradigm (comparable along a curve)."""
    return float(np.mean([np.mean(c[:pairs]) for c in p["blimp"]["correct"].values()]))


def plot_curves(args, variants, probes, path):
    """Held-out MLM loss (random positions, hardest tokens) and BLiMP against the steps, per variant."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for name, summary in variants.items():
        for ax, key in zip(axes[:2], ("eval_loss", "hard_loss")):
            points = [(e["step"], e[key]) for e in summary["evals"] if key in e]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=VARIANTS[name][0])
        curve = [(0, blimp_on(probes["start"][-1], args.curve_pairs))] + \
                [(p["step"], blimp_on(p, args.curve_pairs)) for p in probes[name] if "blimp" in p]
        if len(curve) > 1:
            axes[2].plot(*zip(*[(s, 100 * a) for s, a in curve]), marker="o", label=VARIANTS[name][0])
    titles = ("held-out MLM loss, random positions", "held-out MLM loss, the start's hardest tokens",
              f"BLiMP accuracy ({args.curve_pairs} pairs of each paradigm)")
    for ax, title, unit in zip(axes, titles, ("loss", "loss", "%")):
        ax.set(title=title, xlabel="continued-pretraining step", ylabel=unit)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot(start, variants, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in zip(axes, ("eval_loss", "hard_loss"),
                              ("random positions", "hardest tokens of the start model")):
        for name, summary in variants.items():
            points = [(e["step"], e[key]) for e in summary["evals"] if key in e]
            if points:
                ax.plot(*zip(*points), marker="o", label=VARIANTS[name][0])
        ax.set(title=f"held-out MLM loss, {title}", xlabel="continued-pretraining step", ylabel="loss")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def hardware(device):
    """The machine the times were measured on: the GPU, or the CPU, its cores and whether it computes bf16
    itself (AVX-512 BF16 or AMX), which decides how fast the BLiMP probe and bf16 questioning run."""
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.get_device_name()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    bf16 = "native bf16" if runtime.native_bf16(torch.device("cpu")) else "no native bf16 (emulated)"
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, {bf16}"


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    check_settings(args)
    start, variants = pretrain_all(args)
    probes = probe_all(args, start, variants)
    reports = finetune_all(args, {"start": start, **variants})
    # The wall time is the sum of what each stage took when it ran, so that the invocations a stopped
    # ablation was resumed by are all counted, even one that was killed.
    stages = [start, *variants.values(), *reports.values(), *(p for ps in probes.values() for p in ps)]
    minutes = sum(s["minutes"] for s in stages)
    plot(start, variants, args.out / "mlm-loss.png")
    smoke = "**This is the small preset: a smoke test.** " if args.preset == "small" else ""
    study = ""
    if probes:
        plot_curves(args, variants, probes, args.out / "curves.png")
        pairs = f"the first {args.blimp_pairs} pairs of each paradigm" if args.blimp_pairs else "no pairs"
        study = f"""
## Probes: linguistic knowledge (BLiMP) and held-out MLM, each variant against (a)

BLiMP: accuracy on {pairs}, by pseudo-log-likelihood (probe.py), the mean over paradigms. Held-out MLM:
loss / accuracy on {args.eval_blocks} held-out blocks masked once with a fixed seed, at random positions and
at the 15% of tokens the start model finds hardest, the same tokens for every model. Downstream: the
fine-tuning average above, **a smoke test at this size**.

{study_tables(args, probes, reports)}

Differences are the variant's minus (a)'s (for BLiMP and downstream, higher is better; for the losses,
lower is), with a paired bootstrap 95% interval ({DRAWS} draws): BLiMP's pairs resampled within each
paradigm, the held-out blocks, the fine-tuning seeds (only {len(args.seeds)}: a rough interval). An
asterisk marks an interval that excludes zero.

![held-out MLM loss and BLiMP over the steps](curves.png)
"""
    if start["tokens"]:
        head_note = f" + {args.head_steps} steps of random masking that train its fresh MLM head"
    else:
        head_note = " (it has its MLM head: no head steps)"
    seeds = " ".join(map(str, args.seeds))
    text = f"""# Ablation: {args.preset} preset

{smoke}Fine-tuning dev scores (x100), mean ± std over seeds {seeds}, best epoch of each seed.
MRPC, STS-B and CB show the mean of their two metrics (accuracy/F1, Pearson/Spearman,
accuracy/macro-F1); the other tasks their one metric (CoLA: Matthews correlation). The average column
is the mean over seeds of each seed's average over tasks. Pretraining tokens and minutes: the row's
own stage; the variants all continue from the start checkpoint, whose row shows what it took to make it
(the training of a fresh MLM head, if any). Held-out MLM loss: at the end of continued pretraining, on
fixed masks: random positions, and the tokens the start model finds hardest.

{table(args, start, variants, reports)}

![held-out MLM loss during continued pretraining](mlm-loss.png)
{study}
- command: `python -m experiments.ablation {' '.join(argv if argv is not None else sys.argv[1:])}`
- hardware: {hardware(args.device)}; torch {torch.__version__}
- wall time: {minutes:.0f} min in all, the sum of its stages
- start: {args.model}{head_note}
- continued pretraining: {args.steps} steps x {args.batch_size} blocks of {args.block_length} tokens,
  lr {args.lr}, seed {args.seed}, corpus {' '.join(args.corpus)}
- fine-tuning: {args.ft_epochs} epochs, lr {args.ft_lr}, batch {args.ft_batch_size},
  at most {args.max_train or 'all'} training examples per task, full dev sets
"""
    results = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                        if k != "fingerprint"},
               "pretraining": {"start": start, **variants}, "probes": probes,
               "finetuning": list(reports.values())}
    runtime.write_report(args.out, text, results)
    print("\n" + text)
    return text


if __name__ == "__main__":
    main()
