"""Every exercise plugs into train.py: three steps of the tiny preset with --masking-fn."""

import math

import pytest

import train
from checkpoint import latest_checkpoint

EXERCISES = ["entropy", "whole_word", "span", "curriculum", "frequency"]


@pytest.mark.parametrize("exercise", EXERCISES)
def test_trains_with_the_masking_fn(exercise, solution_of, tiny_checkpoint, tiny_corpus_plurals, tmp_path,
                                    capsys):
    out = tmp_path / "run"
    history = train.main(["--preset", "tiny", "--model", str(tiny_checkpoint),
                          "--corpus", str(tiny_corpus_plurals), "--out", str(out),
                          "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet",
                          "--steps", "3", "--eval-every", "100", "--masking-fn", solution_of(exercise)])
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses and all(math.isfinite(x) for x in losses), f"training losses {losses}"
    assert (latest_checkpoint(out) / "model.safetensors").is_file()
    assert "picks (brackets): [CLS]" in capsys.readouterr().out  # train.py's report ran the function too
