"""No silent wrong run, round two: each case reproduces, on the tiny fixtures, a way a run ended in a
wrong result with exit 0, and checks that it is now refused with a message that names the cause.

1. non-finite numbers: options, a diverging run, files that hold NaN, evaluations of NaN outputs
"""

import errno
import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

import finetune
import glue
import probe
import runtime
import train
from experiments import ablation, transfer
from model import MaskedLM, SequenceClassifier
from tokenizer import Tokenizer


def argv(tiny_checkpoint, tiny_corpus, out, *extra):
    return ["--preset", "tiny", "--model", str(tiny_checkpoint), "--corpus", str(tiny_corpus),
            "--out", str(out), "--cache-dir", str(out.parent / "cache"), "--device", "cpu", "--quiet", *extra]


def refused(parse, option, capsys):
    """The last line argparse printed when `parse` refused `option`."""
    with pytest.raises(SystemExit):
        parse(option)
    return capsys.readouterr().err.strip().splitlines()[-1]


# ----------------------------------------------------------------- 1. non-finite numbers


@pytest.mark.parametrize("option", [["--alpha", "nan"], ["--lr", "inf"], ["--power", "nan"], ["--lr", "nan"],
                                    ["--ratio", "nan"], ["--head-lr", "nan"], ["--threshold", "nan"],
                                    ["--betas", "0.9", "nan"], ["--eps", "inf"], ["--dropout", "nan"]])
def test_train_refuses_a_number_that_is_not_finite(option, capsys):
    said = refused(train.parse_args, option + (["--select", "threshold"] if "--threshold" in option else []),
                   capsys)
    assert said.endswith(f"error: argument {option[0]}: {option[-1]} is not a finite number"), said


@pytest.mark.parametrize("option", [["--lr", "inf"], ["--warmup", "nan"], ["--distill-scale", "nan"],
                                    ["--weight-decay=-inf"]])
def test_finetune_refuses_a_number_that_is_not_finite(option, capsys):
    said = refused(finetune.parse_args, ["--task", "RTE", *option], capsys)
    name, _, value = option[0].partition("=")
    assert said.endswith(f"error: argument {name}: {value or option[-1]} is not a finite number"), said


@pytest.mark.parametrize("parse", [finetune.parse_args, ablation.parse_args, transfer.parse_args])
@pytest.mark.parametrize("seeds, message", [
    (["1", "1", "1"], "--seeds 1 1 1: a seed given twice would count one run twice"),
    (["-1"], "argument --seeds: -1 is not in [0, inf)"),
])
def test_seeds_are_distinct_whole_numbers(parse, seeds, message, tmp_path, capsys):
    task = ["--task", "RTE"] if parse is finetune.parse_args else ["--out", str(tmp_path / "out")]
    assert refused(parse, [*task, "--seeds", *seeds], capsys).endswith(f"error: {message}")


def test_a_diverging_run_stops_before_it_saves(tmp_path, tiny_checkpoint, tiny_corpus):
    """--lr 1e6 --clip 0 turned every weight into NaN, saved them and exited 0."""
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"steps \d+-\d+: the loss or the gradient norm was not finite in \d+ of them; "
                                         r"training diverged, .* the last good checkpoint is none\. Lower --lr"):
        train.main(argv(tiny_checkpoint, tiny_corpus, out, "--lr", "1e6", "--clip", "0", "--warmup", "0",
                        "--log-every", "1"))
    assert not (out / "latest").exists() and not list(out.glob("step-*"))


def test_a_diverging_run_keeps_its_last_good_checkpoint(tmp_path, tiny_checkpoint, tiny_corpus, monkeypatch):
    """Weights that turn NaN between two log lines are never saved; the message names the good one."""
    out = tmp_path / "run"
    real = runtime.optimizer_step

    def poison(optimizer, scaler, parameters, clip=1.0):  # the fourth update writes NaN into one weight
        norm = real(optimizer, scaler, parameters, clip)
        poison.calls += 1
        if poison.calls == 4:
            with torch.no_grad():
                optimizer.param_groups[0]["params"][0].view(-1)[0] = float("nan")
        return norm
    poison.calls = 0
    monkeypatch.setattr(runtime, "optimizer_step", poison)
    said = r"step 4: training diverged \(weight '.*' holds NaN\); nothing was saved, and the last good " \
           r"checkpoint is .*step-0000002"
    with pytest.raises(SystemExit, match=said):
        train.main(argv(tiny_checkpoint, tiny_corpus, out, "--save-every", "2", "--log-every", "5"))
    assert sorted(p.name for p in out.glob("step-*")) == ["step-0000002"]


def nan_copy(tiny_checkpoint, tmp_path):
    """The tiny checkpoint with one NaN in one weight."""
    folder = tmp_path / "nan-model"
    folder.mkdir()
    for f in tiny_checkpoint.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    weights = load_file(folder / "model.safetensors")
    name = sorted(weights)[3]
    weights[name][0] = float("nan")
    save_file(weights, str(folder / "model.safetensors"))
    return folder, name


def test_a_checkpoint_that_holds_nan_is_refused_naming_the_file_and_tensor(tmp_path, tiny_checkpoint):
    folder, name = nan_copy(tiny_checkpoint, tmp_path)
    for cls in (MaskedLM, SequenceClassifier):
        with pytest.raises(ValueError, match=rf"model.safetensors: tensor '{name}' holds NaN; refusing it"):
            cls.from_pretrained(folder)


def test_a_prompt_that_holds_nan_is_refused(tmp_path):
    folder = tmp_path / "prompt"
    folder.mkdir()
    prompt = torch.zeros(2, 2, 4, 32)
    prompt[1, 0, 2, 5] = float("nan")
    save_file({"prompt": prompt}, str(folder / "prompt.safetensors"))
    with pytest.raises(ValueError, match=r"prompt.safetensors: tensor 'prompt' holds NaN; refusing it"):
        finetune.load_tuned(folder)
    save_file({"other": torch.zeros(1)}, str(folder / "prompt.safetensors"))
    with pytest.raises(ValueError, match=r"prompt.safetensors: no tensor 'prompt' \(it holds other\)"):
        finetune.load_prompt(folder, None, 4)


def test_an_evaluation_of_nan_outputs_says_so_instead_of_a_score(tiny_checkpoint):
    model, tok = MaskedLM.from_pretrained(tiny_checkpoint), Tokenizer(tiny_checkpoint)
    with torch.no_grad():
        model.dense.bias.fill_(float("nan"))
    machine = runtime.Machine(torch.device("cpu"))
    ids = tok(["the cat sat on the hill .", "a dog ran near the river ."])["input_ids"]
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    with pytest.raises(SystemExit, match="held-out MLM: the model's outputs hold NaN or infinity"):
        probe.evaluate(model, [(ids, labels)], machine.autocast)
    with pytest.raises(SystemExit, match="pseudo-log-likelihoods: the model's outputs hold NaN or infinity"):
        probe.blimp(model, tok, {"p": {"field": "f", "pairs": [("the cat sat .", "cat the sat .")]}}, machine)


def test_finetune_reports_no_score_of_nan_predictions(tiny_checkpoint):
    with pytest.warns(UserWarning, match="no classification head"):  # a fresh head, as fine-tuning makes
        model = SequenceClassifier.from_pretrained(tiny_checkpoint, num_labels=2)
    with torch.no_grad():
        model.dense.bias.fill_(float("nan"))
    examples = [glue.Example("a cat sat .", "a cat moved .", 0, "0")]
    args = SimpleNamespace(batch_size=2, max_length=None)
    with pytest.raises(SystemExit, match="RTE: predictions: the model's outputs hold NaN or infinity"):
        finetune.predict(model, Tokenizer(tiny_checkpoint), glue.TASKS["RTE"], examples, args,
                         runtime.Machine(torch.device("cpu")))


# ----------------------------------------------------------------- 4. crashes that name nothing (run folder)


def test_a_torn_last_line_of_the_log_does_not_block_resume(tmp_path, tiny_checkpoint, tiny_corpus):
    """A crash while a log line is written leaves half of it; --resume drops it and goes on."""
    out = tmp_path / "run"
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "2", "--save-every", "1", "--log-every", "1"))
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 3, "pha')
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "4", "--save-every", "1", "--log-every", "1",
                    "--resume"))
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert [s for s in steps if s > 0] == sorted(s for s in steps if s > 0) and max(steps) == 4


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos "
                                                "36416 vs 36308")])
def test_a_full_disk_during_a_save_says_so_and_leaves_no_temporary_folder(error, tmp_path, tiny_checkpoint,
                                                                          tiny_corpus, monkeypatch):
    out = tmp_path / "run"
    real_save = torch.save

    def full(obj, path, *args, **kwargs):
        if str(path).endswith("training_state.pt") and ".step-0000004" in str(path):
            raise error
        return real_save(obj, path, *args, **kwargs)
    monkeypatch.setattr(torch, "save", full)
    if isinstance(error, RuntimeError):  # torch's own message names no cause: the free space does
        monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=0))
    with pytest.raises(SystemExit, match=r"\.step-0000004\.tmp: saving step 4 failed: no space left on device; "
                                         r"nothing of it was kept, and the last checkpoint is .*step-0000002"):
        train.main(argv(tiny_checkpoint, tiny_corpus, out, "--save-every", "2"))
    assert not list(out.glob(".step-*")) and (out / "step-0000002").is_dir()
