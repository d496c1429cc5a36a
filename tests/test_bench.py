"""bench.py runs end to end on a tiny config and prints one well-formed JSON line per mode (no timing
claims)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tests" / "fixtures" / "parity" / "bert-mlm-tiny" / "config.json"


def bench(*modes, extra=()):
    cmd = [sys.executable, str(ROOT / "bench.py"), "--config", str(CONFIG), "--batch", "2", "--length", "16",
           "--steps", "1", "--warmup", "1", "--device", "cpu", *extra, "--modes", *modes]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_bench_prints_one_result_per_mode():
    run = bench("random", "online", "offline")
    assert run.returncode == 0, run.stderr
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["mode"] for r in results] == ["random", "online", "offline"]
    for r in results:
        assert r["tokens_per_s"] > 0 and r["s_per_step"] > 0 and r["peak_mb"] > 0, r
        assert (r["batch"], r["length"], r["dtype"]) == (2, 16, "fp32")


def test_bench_alternative_runs_or_says_why_not():
    run = bench("alternative")
    assert run.returncode == 0, run.stderr
    (result,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert result["mode"] == "alternative"
    assert result.get("skipped") == "transformers is not installed" or result["tokens_per_s"] > 0


def test_bench_rounds_run_every_mode_in_turn():
    run = bench("random", "online", extra=("--rounds", "2"))
    assert run.returncode == 0, run.stderr
    results = [json.loads(line) for line in run.stdout.splitlines()]
    rounds = [(r["mode"], r["round"]) for r in results]
    assert rounds == [("random", 1), ("online", 1), ("random", 2), ("online", 2)]
    (line,) = [l for l in run.stderr.splitlines() if l.startswith("online vs random")]
    per_round = [b["s_per_step"] / a["s_per_step"] for a, b in (results[:2], results[2:])]
    assert f"(round 1: {per_round[0]:.2f}, round 2: {per_round[1]:.2f})" in line
