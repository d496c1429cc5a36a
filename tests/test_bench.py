"""bench.py runs end to end on a tiny config and prints one well-formed JSON line per mode (no timing
claims)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tests" / "fixtures" / "parity" / "bert-mlm-tiny" / "config.json"


def bench(*modes, extra=()):
    cmd = [sys.executable, "-m", "experiments.bench", "--config", str(CONFIG), "--batch", "2", "--length", "16",
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


def test_the_flops_of_a_step_are_the_readmes():
    """MiniLM at 16 x 128 (README, Speed): the encoder 138 GFLOP forward and backward, the masked
    projection 22, the alternative's projection of every position 145, online's questioning 94."""
    from experiments import bench
    from model import EncoderConfig

    minilm = EncoderConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                           intermediate_size=1536)
    gflops = {mode: bench.step_flops(minilm, 16, 128, mode) / 1e9 for mode in bench.MODES}
    assert round(gflops["random"]) == 160 and round(gflops["alternative"]) == 284
    assert gflops["online"] - gflops["random"] == pytest.approx(94.5, abs=0.5)
    assert gflops["offline"] - gflops["random"] == pytest.approx(53.2, abs=0.5)


def test_bench_gives_the_model_flops_utilisation_against_a_peak():
    run = bench("random", extra=("--peak-tflops", "0.001"))
    assert run.returncode == 0, run.stderr
    (result,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert result["gflops_per_step"] > 0
    achieved = result["gflops_per_step"] / result["s_per_step"]  # GFLOP/s, against a peak of 1 GFLOP/s
    assert result["mfu"] == pytest.approx(achieved, rel=0.02)


def test_make_gpu_check_asks_for_the_peak_and_a_gpu():
    usage = subprocess.run(["make", "-s", "gpu-check"], cwd=ROOT, capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: make gpu-check PEAK=" in usage.stdout
    if not torch.cuda.is_available():
        here = subprocess.run(["make", "-s", "gpu-check", "PEAK=989"], cwd=ROOT,
                              capture_output=True, text=True)
        assert here.returncode != 0 and "no CUDA device" in here.stderr
