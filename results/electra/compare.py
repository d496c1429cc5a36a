"""
compare.py -- the fine-tuning smoke test's table: two models' finetune.py reports, task by task, with the
paired difference over the seeds and its 95% bootstrap interval (experiments/stats.py), as
experiments/ablation.py reports its variants.

    python results/electra/compare.py BASE.json OTHER.json [NUMBERS.json]   # finetune.py --out reports

A task's score per seed is experiments.ablation.task_score (its metric, or the mean of its two, x 100);
the average is each seed's mean over the tasks. With three seeds the interval is a coarse one: it
resamples three differences.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for experiments/
from experiments.ablation import task_score  # noqa: E402
from experiments.stats import cell, paired_seeds  # noqa: E402


def per_seed(report) -> dict:
    """{seed: the task's score} of one task's report."""
    return {run["seed"]: task_score(run["best"]) for run in report["runs"]}


def table(base, other) -> tuple[str, dict]:
    """The markdown table and its numbers: a row per task and one for the average over tasks."""
    tasks = [r["task"] for r in base]
    if tasks != [r["task"] for r in other]:
        raise SystemExit(f"the reports hold other tasks: {tasks}, {[r['task'] for r in other]}")
    scores = {}
    for a, b in zip(base, other):
        sa, sb = per_seed(a), per_seed(b)
        if sa.keys() != sb.keys():
            raise SystemExit(f"{a['task']}: the reports hold other seeds: {sorted(sa)}, {sorted(sb)}")
        seeds = sorted(sa)
        scores[a["task"]] = (np.array([sa[s] for s in seeds]), np.array([sb[s] for s in seeds]))
    scores["average"] = tuple(np.mean([v[i] for v in scores.values()], axis=0) for i in (0, 1))
    rows = ["| task | metric | " + f"{base[0]['model']} | {other[0]['model']} | difference, 95% interval |",
            "|---|---|---|---|---|"]
    numbers = {}
    for task, (a, b) in scores.items():
        rng = np.random.default_rng(0)
        difference = paired_seeds(a, b, rng)
        best = next((r["runs"][0]["best"] for r in base if r["task"] == task), None)
        metrics = [k for k in best if k != "epoch"] if best else ["mean over the tasks"]
        metric = metrics[0] if len(metrics) == 1 else f"mean of {' and '.join(metrics)}"
        rows.append(f"| {task} | {metric} | {a.mean():.1f} ± {a.std():.1f} | "
                    f"{b.mean():.1f} ± {b.std():.1f} | {cell(*difference, 1)} |")
        numbers[task] = {"base": a.tolist(), "other": b.tolist(), "difference": list(difference)}
    return "\n".join(rows), numbers


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit("usage: python results/electra/compare.py BASE.json OTHER.json [NUMBERS.json] "
                         "(two finetune.py --out reports of the same tasks and seeds)")
    reports = [json.loads(Path(p).read_text(encoding="utf-8")) for p in sys.argv[1:3]]
    text, numbers = table(*reports)
    print(text)
    if len(sys.argv) == 4:  # the table's numbers: each seed's score, and the difference with its interval
        Path(sys.argv[3]).write_text(json.dumps(numbers, indent=1) + "\n", encoding="utf-8")
