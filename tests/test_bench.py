"""bench.py runs end to end on a tiny config and prints one well-formed JSON line per mode (no timing claims)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tests" / "fixtures" / "parity" / "bert-mlm-tiny" / "config.json"


def bench(*modes):
    cmd = [sys.executable, str(ROOT / "bench.py"), "--config", str(CONFIG), "--batch", "2", "--length", "16",
           "--steps", "1", "--warmup", "1", "--device", "cpu", "--modes", *modes]
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
