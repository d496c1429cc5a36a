"""
courses.py -- what MCL's courses change: ELECTRA, + STD, + ITD, + self-correction, all courses, their soups.

    python -m experiments.courses --data-root ../shared/data     # MiniLM + Wikipedia, 2 CPU cores, about 1 hour

From one start (MiniLM as the discriminator, a fresh generator), one corpus, one
budget of steps and one seed (train.py --preset electra), it
1. pretrains five ways: ELECTRA alone (RTD); + STD; + ITD; + the two
   self-correction courses; all courses (mcl.py's options, each course as
   frequent as RTD: --std-ratio 0.15, --itd-ratio 0.15, weights 1);
2. averages the five into the uniform and the greedy course soup
   (experiments/soup.py);
3. measures every model's held-out detection on the same held-out blocks with
   the same masks and noise, twice: under RTD alone (ELECTRA's own test) and
   under all three courses at 0.15 (F1 over all positives and per course); G's
   MLM accuracy; and the label balance each run trained on (its own mix, from
   its log);
4. fine-tunes every discriminator on small GLUE/SuperGLUE tasks over seeds
   (finetune.py), and compares each with ELECTRA's seed against seed (a 95%
   bootstrap interval of the paired difference, experiments/stats.py);
5. times one optimizer step of each variant's objective, side by side.

Every stage keeps its result under --out with its record (checkpoint.provenance)
and is skipped when that record matches: a stopped study continues where it
stopped when run again. It prints the tables; their numbers go to --results (results.json).
"""

import argparse
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import checkpoint
import data
import electra
import finetune
import mcl
from experiments import soup
from experiments.ablation import hardware, run_script, settings_of, stage_done, task_files, task_score
from experiments.stats import cell, paired_seeds
from tokenizer import Tokenizer

COURSES = ["--std-ratio", "0.15", "--itd-ratio", "0.15"]
CORRECTION = ["--correct-generator", "1", "--correct-discriminator", "1"]
VARIANTS = {  # name -> (what it is, train.py options beyond --preset electra)
    "electra": ("ELECTRA (RTD)", []),
    "std": ("+ STD", COURSES[:2]),
    "itd": ("+ ITD", COURSES[2:]),
    "correction": ("+ self-correction (both courses)", CORRECTION),
    "all": ("all courses", COURSES + CORRECTION),
}
SOUPS = {"soup-uniform": ("uniform soup of the five", []),
         "soup-greedy": ("greedy soup of the five", ["--greedy"])}
MIXES = {"rtd alone": mcl.Courses(),  # ELECTRA's own test
         "all courses": mcl.Courses(std_ratio=0.15, itd_ratio=0.15)}  # the measurement's common mix


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/mcl-study"), help="the stages' folders")
    ap.add_argument("--results", type=Path, default=Path("results/mcl"),
                    help="where results.json, the tables' numbers, is written")
    ap.add_argument("--steps", type=int, default=150, help="pretraining steps of every variant")
    ap.add_argument("--tasks", nargs="+", default=["RTE", "CB"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--data-root", default=None, help="holds glue/ and superglue/ (finetune.py's)")
    ap.add_argument("--device", default="cpu")
    return ap.parse_args(argv)


def pretrain(args, name, options):
    """One train.py run, from --preset electra, in out/pretrain/<name>/run; its summary kept beside it."""
    stage = args.out / "pretrain" / name
    run = stage / "run"
    argv = ["--preset", "electra", "--steps", str(args.steps), "--eval-every", str(args.steps),
            "--save-every", str(args.steps), "--device", args.device, "--out", str(run), "--quiet", *options]
    record = checkpoint.provenance({}, settings_of(argv))
    if stage_done(stage, record, f"the pretraining of {name!r}", "summary.json"):
        return json.loads((stage / "summary.json").read_text())
    if (run / "latest").exists():
        argv.append("--resume")
    print(f"\n=== pretraining: {name} ===\n    python train.py {' '.join(argv)}", flush=True)
    t0 = time.time()
    run_script("train.py", argv)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    summary = {"name": name, "checkpoint": str(checkpoint.latest_checkpoint(run)),
               "minutes": (time.time() - t0) / 60,
               "evals": [e for e in log if e.get("phase") in ("start", "end")]}
    checkpoint.write_json(stage / "summary.json", summary)
    checkpoint.write_record(stage, record)
    return summary


def file_done(path, record, what) -> bool:
    """Whether the result file `path` is there and was made from `record` (else refused: stage_done's rule
    for a stage that is one file)."""
    return checkpoint.reusable(path, record, what) and path.is_file()


def make_soup(args, name, options, runs):
    """One soup of the five runs (experiments/soup.py), in out/soup/<name>; its summary beside it."""
    folder = args.out / "soup" / name
    record = checkpoint.provenance({"models": [r["checkpoint"] for r in runs.values()]}, {"options": options})
    if not file_done(folder.parent / f"{name}.json", record, f"the soup {name!r}"):
        print(f"\n=== {name} ===", flush=True)
        t0 = time.time()
        shutil.rmtree(folder, ignore_errors=True)  # a soup whose stage did not finish: made again
        soup.main([r["checkpoint"] for r in runs.values()] + ["--out", str(folder), *options])
        checkpoint.write_json(folder.parent / f"{name}.json",
                              {"name": name, "checkpoint": str(folder), "minutes": (time.time() - t0) / 60,
                               "record": checkpoint.read_record(folder)})
        checkpoint.write_record(folder.parent / f"{name}.json", record)
    return json.loads((folder.parent / f"{name}.json").read_text())


def detection(args, models):
    """Every model's held-out detection under each of MIXES, on the held-out blocks of the preset's corpus
    (the fixed masks and noise of train.py's evaluations)."""
    path = args.out / "detection.json"
    record = checkpoint.provenance({"models": [m["checkpoint"] for m in models.values()]},
                                   {"mixes": {k: [c.std_ratio, c.itd_ratio] for k, c in MIXES.items()}})
    if file_done(path, record, "the detection measurement"):
        return json.loads(path.read_text())
    first = Path(next(iter(models.values()))["checkpoint"])
    tok = Tokenizer(first / "discriminator")
    device = torch.device(args.device)
    batches = soup.heldout_batches(first, tok, checkpoint.read_record(first)["settings"]["eval_blocks"], device)
    result = {}
    for name, m in models.items():
        pair = electra.ElectraPretraining.from_pretrained(m["checkpoint"]).to(device)
        result[name] = {mix: mcl.evaluate(c, pair, tok, batches, torch.autocast(device.type, enabled=False))
                        for mix, c in MIXES.items()}
        for mix, r in result[name].items():
            print(f"{name}, {mix}: {mcl.evaluation_text(r)}", flush=True)
    checkpoint.write_json(path, result)
    checkpoint.write_record(path, record)
    return result


def finetune_all(args, models):
    """finetune.py on every model and task, the ablation's small settings; each report kept with its record."""
    common = ["--seeds", *map(str, args.seeds), "--epochs", "2", "--lr", "1e-4", "--batch-size", "16",
              "--max-train", "256", "--max-length", "96", "--device", args.device, "--quiet"]
    common += ["--data-root", str(args.data_root)] if args.data_root else []
    reports = {}
    for name, m in models.items():
        for task in args.tasks:
            stage = args.out / "finetune" / name / task
            record = checkpoint.provenance({"model": m["checkpoint"], "data": task_files(args, task)},
                                           {"task": task, **settings_of(common)})
            if not stage_done(stage, record, f"the fine-tuning of {name} on {task}", "report.json"):
                argv = ["--model", m["checkpoint"], "--task", task, *common,
                        "--out", str(stage / "report.json")]
                print(f"\n=== fine-tuning {name} on {task} ===\n    python finetune.py {' '.join(argv)}",
                      flush=True)
                t0 = time.time()
                finetune.main(argv)
                checkpoint.write_json(stage / "minutes.json", {"minutes": (time.time() - t0) / 60})
                checkpoint.write_record(stage, record)
            (report,) = json.loads((stage / "report.json").read_text())
            reports[name, task] = report
    return reports


def cost(args, rounds=3, steps=2):
    """Seconds per optimizer step of each variant's objective (one micro-batch of the preset's 16 x 128,
    forward, backward, AdamW), measured side by side: the variants take turns, `rounds` times, after a
    step each to warm up; the median of each and its ratio to ELECTRA's. A run's own minutes depend on
    what else the machine ran at the time; these ratios do not."""
    path = args.out / "cost.json"
    if path.exists():
        return json.loads(path.read_text())
    tok = Tokenizer("minilm")
    torch.manual_seed(0)
    with warnings.catch_warnings():  # MiniLM has no detection head: a fresh one, as the runs started
        warnings.simplefilter("ignore")
        pair = electra.ElectraPretraining.build("minilm").train()
    blocks, _, _ = data.load_corpus(["wiki"], tok, 128, pair.config.max_positions, 0.01)
    ids = blocks.batch(np.arange(16))
    optimizer = torch.optim.AdamW(pair.parameters(), lr=1e-5)
    courses = {name: mcl.Courses(**{o[2:].replace("-", "_"): float(v) for o, v in zip(opts[::2], opts[1::2])})
               for name, (_, opts) in VARIANTS.items()}
    times = {name: [] for name in courses}

    def step(c):
        loss, _ = mcl.micro_batch_loss(c, pair, tok, ids, torch.Generator().manual_seed(0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for c in courses.values():
        step(c)
    for _ in range(rounds):
        for name, c in courses.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step(c)
            times[name].append((time.perf_counter() - t0) / steps)
    median = {name: float(np.median(t)) for name, t in times.items()}
    result = {name: {"seconds_per_step": m, "ratio": m / median["electra"], "all": times[name]}
              for name, m in median.items()}
    checkpoint.write_json(path, result)
    return result


def trained_balance(summary) -> str:
    """The share of positive labels a run trained on: its own mix, at its last evaluation."""
    end = summary["evals"][-1]
    return f"{end.get('positive_share', end.get('rtd_share_replaced', float('nan'))):.1%}"


def tables(args, models, detected, reports, costs) -> tuple[str, dict]:
    """The detection table and the fine-tuning table (markdown), and their numbers."""
    labels = {**{k: v[0] for k, v in VARIANTS.items()}, **{k: v[0] for k, v in SOUPS.items()}}
    rows = ["| model | positives trained on | F1, RTD alone | F1, all courses | its RTD | its STD | its ITD "
            "| G's MLM accuracy | pretraining min | s per step (x ELECTRA's) |", "|" + "---|" * 10]
    for name, m in models.items():
        alone, d = detected[name]["rtd alone"], detected[name]["all courses"]
        balance = trained_balance(m) if "evals" in m else "-"
        rows.append(f"| {labels[name]} | {balance} | {alone['rtd_f1']:.3f} | {d['f1']:.3f} "
                    f"| {d['rtd_f1']:.3f} | {d['std_f1']:.3f} | {d['itd_f1']:.3f} "
                    f"| {alone['generator_accuracy']:.3f} | {m['minutes']:.1f} | "
                    + (f"{costs[name]['seconds_per_step']:.2f} ({costs[name]['ratio']:.2f}x) |" if name in costs
                       else "- |"))
    numbers = {"detection": detected, "cost": costs, "finetune": {}}
    head = ["model", *args.tasks, "average", "average minus ELECTRA's, 95% interval"]
    ft = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    per_seed = {name: np.array([[task_score(r["best"]) for r in reports[name, t]["runs"]] for t in args.tasks])
                for name in models}
    base = per_seed["electra"].mean(0)
    for name, scores in per_seed.items():
        average = scores.mean(0)
        difference = paired_seeds(base, average, np.random.default_rng(0)) if name != "electra" else None
        ft.append(f"| {labels[name]} | " + " | ".join(f"{s.mean():.1f} ± {s.std():.1f}" for s in scores)
                  + f" | {average.mean():.1f} ± {average.std():.1f} | "
                  + (cell(*difference, 1) if difference else "-") + " |")
        numbers["finetune"][name] = {"per_task_seed": scores.tolist(), "difference": difference}
    return "\n".join(rows) + "\n\n" + "\n".join(ft), numbers


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    runs = {name: pretrain(args, name, options) for name, (_, options) in VARIANTS.items()}
    soups = {name: make_soup(args, name, options, runs) for name, (_, options) in SOUPS.items()}
    models = {**runs, **soups}
    detected = detection(args, models)
    reports = finetune_all(args, models)
    costs = cost(args)
    text, numbers = tables(args, models, detected, reports, costs)
    args.results.mkdir(parents=True, exist_ok=True)
    numbers.update(machine=hardware(args.device), minutes_this_invocation=(time.time() - t0) / 60,
                   soups={k: v["record"]["settings"] for k, v in soups.items()})
    checkpoint.write_json(args.results / "results.json", numbers)
    print(text)  # the tables of results/mcl/README.md


if __name__ == "__main__":
    main()
