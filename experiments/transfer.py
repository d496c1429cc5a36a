"""
transfer.py -- Vega v2's downstream half, measured: full fine-tuning, prompt tuning, prompt transfer and
distilled prompt transfer (PANDA) on low-resource SuperGLUE tasks.

    # CB, COPA and WSC from the study's start model: 2 CPU cores, about 2 hours
    python -m experiments.transfer --model runs/ablation-study/pretrain/start/run
    python -m experiments.transfer --model runs/demo --targets CB --seeds 1 2 3 --out runs/transfer-cb

Vega v2 (Zhong et al. 2022) adapts its self-evolved model to a small task by
training a soft prompt instead of every weight, starting from the prompt of a
related source task; PANDA (the same group) distils that transferred prompt
into a fresh one. For each target task and every seed, this script runs,
from one start checkpoint (each stage a finetune.py command, printed, its
report and prompts kept in --out/<stage>/ with the record of what it was made
from: the content of the model, of the task files and of the prompts it starts
from, and its settings; a stage is skipped when that record matches, so a
stopped run continues, and refused, naming what differs, when it does not):

  1. full fine-tuning                         (finetune.py, the default)
  2. prompt tuning from a random prompt       (--tuning prompt)
  3. prompt transfer from each source task    (--prompt-init: the source's prompt, tuned once, reused)
  4. distilled prompt transfer from the chosen source  (--distill-from: PANDA)

and writes a table: mean +/- std over the seeds, the paired difference of
each method from full fine-tuning and from prompt tuning with 95% bootstrap
intervals over the seeds, what each method trains and stores, and the
transferability matrix (the cosine similarity of what training changed in
each source's prompt and in the target's own, beside the gain transfer gave).
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

import checkpoint
import finetune
import glue
import runtime
from checkpoint import resolve_checkpoint
from experiments.ablation import hardware, settings_of, stage_done, task_files
from experiments.stats import cell, paired_seeds

# Each target, and the source of its distilled transfer, with the reason.
CHOSEN = {
    "CB": ("RTE", "both ask whether a text entails a hypothesis"),
    "COPA": ("RTE", "no causal-reasoning task is here; RTE's inference between two texts is the nearest"),
    "WSC": ("WNLI", "both are Winograd schemas: what a pronoun refers to decides the answer"),
}
METHODS = {"full": "1. full fine-tuning", "prompt": "2. prompt tuning, random prompt",
           "transfer": "3. prompt transfer", "panda": "4. distilled prompt transfer (PANDA)"}


def parse_args(argv=None):
    count, positive = runtime.number(int, at_least=0), runtime.number(int, at_least=1)
    rate = runtime.number(float, above=0)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    runtime.model_option(ap, default="runs/ablation-study/pretrain/start/run",
                         help="the start checkpoint (folder, run folder, hub id, or 'minilm')")
    ap.add_argument("--targets", nargs="+", choices=sorted(CHOSEN), default=list(CHOSEN), metavar="TASK")
    ap.add_argument("--sources", nargs="+", choices=sorted(glue.TASKS), default=["RTE", "WNLI"],
                    metavar="TASK", help="source tasks; each target's prompt transfer runs from every one")
    runtime.seeds_option(ap, default=[1, 2, 3])
    ap.add_argument("--epochs", type=positive, default=5, help="prompt-tuning epochs (every prompt method)")
    ap.add_argument("--lr", type=rate, default=1e-2, help="prompt-tuning learning rate (P-tuning v2's 1e-2)")
    ap.add_argument("--prompt-length", type=positive, default=20)
    ap.add_argument("--full-epochs", type=positive, default=3, help="full fine-tuning epochs")
    ap.add_argument("--full-lr", type=rate, default=1e-4, help="full fine-tuning learning rate")
    ap.add_argument("--source-epochs", type=positive, default=5, help="epochs of each source's prompt")
    ap.add_argument("--source-examples", type=count, default=1000,
                    help="training examples of each source task (0: all)")
    ap.add_argument("--distill-scale", type=runtime.number(float, at_least=0), default=1.0,
                    help="lambda = this x max(0, transferability)")
    ap.add_argument("--batch-size", type=positive, default=16)
    ap.add_argument("--max-length", type=positive, default=None, help="tokens per input; None: finetune.py's")
    runtime.data_root_option(ap, holds="glue/ and superglue/")
    runtime.machine_options(ap, precisions=())
    ap.add_argument("--out", default="runs/transfer", help="results folder")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    missing = [CHOSEN[t][0] for t in args.targets if CHOSEN[t][0] not in args.sources]
    if missing:
        ap.error(f"--sources must include {', '.join(sorted(set(missing)))}, the chosen source of a target")
    args.out = Path(args.out)
    return args


# -----------------------------------------------------------------------------
# The stages: each a finetune.py command, its report kept


def stage(args, name, task, options, starts=None, save=False):
    """finetune.py on `task` with these options, from args.start and the prompts in `starts` ({option:
    folder}); its report (and with `save` its prompts) kept in out/NAME/, with the record of what it was
    made from, and reused only when that record matches."""
    folder, starts = args.out / name, starts or {}
    options = [*options, "--batch-size", str(args.batch_size)]
    options += ["--max-length", str(args.max_length)] if args.max_length else []
    inputs = {"model": args.start, "data": task_files(args, task), **starts}
    record = checkpoint.provenance(inputs, {"task": task, **settings_of(options)})
    # A stage made from anything else is refused, not redone: this command is run again to finish the same
    # study, and another --model or other settings with the same --out are most likely a forgotten --out;
    # redoing would overwrite that study's stages, hours of them. Another --out keeps both.
    if not stage_done(folder, record, f"the stage {name}", "report.json"):
        shutil.rmtree(folder / "prompts", ignore_errors=True)  # what a stopped run of this stage left
        argv = ["--model", str(args.start), "--task", task, "--device", args.device, *options,
                *(word for option, path in starts.items() for word in (f"--{option}", str(path))),
                *(["--save", str(folder / "prompts")] if save else []), "--out", str(folder / "report.json")]
        argv += ["--data-root", str(args.data_root)] if args.data_root else []
        argv += ["--quiet"] if args.quiet else []
        print(f"\n=== {name} ===\n    python finetune.py {' '.join(argv)}", flush=True)
        finetune.main(argv)
        checkpoint.write_record(folder, record)
    (report,) = json.loads((folder / "report.json").read_text())
    return report


def saved(args, name, task):
    """The prompts a stage saved of a task: the best seed's, and every seed's in seed-N/."""
    return args.out / name / "prompts" / task


def run_all(args):
    """Every stage, in an order that lets each reuse the ones before; {stage: report}."""
    prompt = ["--tuning", "prompt", "--prompt-length", str(args.prompt_length), "--lr", str(args.lr)]
    tuned, seeds = [*prompt, "--epochs", str(args.epochs)], ["--seeds", *map(str, args.seeds)]
    reports = {}
    for source in args.sources:  # once, with the first seed: every target and seed reuses it
        reports[f"source-{source}"] = stage(
            args, f"source-{source}", source, [*prompt, "--epochs", str(args.source_epochs),
                                               "--seeds", str(args.seeds[0]),
                                               "--max-train", str(args.source_examples)], save=True)
    for target in args.targets:
        full = ["--epochs", str(args.full_epochs), "--lr", str(args.full_lr), *seeds]
        reports[f"full-{target}"] = stage(args, f"full-{target}", target, full)
        reports[f"prompt-{target}"] = stage(args, f"prompt-{target}", target, [*tuned, *seeds], save=True)
        for source in args.sources:
            reports[f"transfer-{source}-{target}"] = stage(
                args, f"transfer-{source}-{target}", target, [*tuned, *seeds],
                {"prompt-init": saved(args, f"source-{source}", source)}, save=True)
        source = CHOSEN[target][0]  # the teachers: the transfer runs just made, one per seed
        reports[f"panda-{source}-{target}"] = stage(
            args, f"panda-{source}-{target}", target,
            [*tuned, *seeds, "--distill-scale", str(args.distill_scale)],
            {"distill-from": saved(args, f"source-{source}", source),
             "target-prompt": saved(args, f"prompt-{target}", target) / f"seed-{args.seeds[0]}",
             "teachers": saved(args, f"transfer-{source}-{target}", target)})
    return reports


# -----------------------------------------------------------------------------
# The tables


def per_seed(report):
    """The task's metric (x100) of each seed's best epoch, in seed order."""
    return [100 * r["best"][report["metric"]] for r in sorted(report["runs"], key=lambda r: r["seed"])]


def tables(args, reports):
    rows = []
    for target in args.targets:
        source = CHOSEN[target][0]
        methods = {"full": reports[f"full-{target}"], "prompt": reports[f"prompt-{target}"],
                   "transfer": reports[f"transfer-{source}-{target}"],
                   "panda": reports[f"panda-{source}-{target}"]}
        metric = methods["full"]["metric"]
        rows += [f"### {target} ({metric}, dev; {len(args.seeds)} seeds; transfer and PANDA from {source}: "
                 f"{CHOSEN[target][1]})", "",
                 "| method | mean ± std | minus full fine-tuning | minus prompt tuning "
                 "| trained | stored per task |",
                 "|---|---|---|---|---|---|"]
        for key, report in methods.items():
            scores, rng = per_seed(report), np.random.default_rng(0)
            versus = [cell(*paired_seeds(per_seed(methods[base]), scores, rng), 1) if key != base else "-"
                      for base in ("full", "prompt")]
            rows.append(f"| {METHODS[key]} | {np.mean(scores):.1f} ± {np.std(scores):.1f} | "
                        f"{' | '.join(versus)} | "
                        f"{report['trainable_parameters']:,} | {report['stored_parameters']:,} numbers |")
        rows.append("")
    # The transferability matrix: does the similarity of the prompts predict what transfer gains?
    rows += ["### Transferability: cosine similarity of what training changed in the source's prompt and in "
             "the target's own (each minus its random start), and the gain of prompt transfer over prompt "
             "tuning (points, 95% interval over seeds)", "",
             "| target \\ source | " + " | ".join(args.sources) + " |", "|---|" + "---|" * len(args.sources)]
    for target in args.targets:
        # the target's own prompt of the sources' seed: every pair of prompts compared started alike
        own, _ = finetune.saved_change(saved(args, f"prompt-{target}", target) / f"seed-{args.seeds[0]}")
        cells = []
        for source in args.sources:
            theirs, _ = finetune.saved_change(saved(args, f"source-{source}", source))
            gain = paired_seeds(per_seed(reports[f"prompt-{target}"]),
                                per_seed(reports[f"transfer-{source}-{target}"]), np.random.default_rng(0))
            cells.append(f"cos {finetune.transferability(theirs, own):+.3f}, gain {cell(*gain, 1)}")
        rows.append(f"| {target} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.start = resolve_checkpoint(args.model)  # once: a run folder that is still training moves on
    reports = run_all(args)
    minutes = sum(r["minutes"] for r in reports.values())
    start = args.model if str(args.start) == args.model else f"{args.model} ({args.start})"
    text = f"""# Prompt tuning and prompt transfer: {', '.join(args.targets)}

Dev scores (x100) of each seed's best epoch; the differences are paired by seed (the same seed's
runs share their data order), with a bootstrap 95% interval over the {len(args.seeds)} seeds: a rough
interval, an asterisk where it excludes zero. Prompt methods train a deep prompt of
{args.prompt_length} vectors per layer and the head, the encoder frozen, for {args.epochs} epochs at lr
{args.lr}; full fine-tuning trains everything for {args.full_epochs} epochs at lr {args.full_lr}. Each
source's prompt is tuned once ({args.source_epochs} epochs, at most {args.source_examples or 'all'}
examples) and reused by every target and seed. PANDA: the teacher of each seed is that seed's
prompt-transfer run; the student starts from a random prompt; lambda = {args.distill_scale} x
max(0, transferability), the cosine similarity of what training changed in the source's prompt and
in the target's own (each minus its random start, which alone would decide the cosine).

{tables(args, reports)}

- command: `python -m experiments.transfer {' '.join(argv if argv is not None else sys.argv[1:])}`
- start model: {start}; hardware: {hardware(args.device)}; torch {torch.__version__}
- time: {minutes:.0f} min of fine-tuning and prompt tuning in all, over the stages
"""
    runtime.write_report(args.out, text, {"args": {k: str(v) for k, v in vars(args).items()
                                                   if k != "fingerprint"},
                                          "reports": reports})
    print("\n" + text)
    return text


if __name__ == "__main__":
    main()
