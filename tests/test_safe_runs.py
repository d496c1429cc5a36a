"""No silent wrong run: interrupts, resume, presets, the held-out split, options out of range.

Each test reproduces a way a run could go wrong without a word, on the tiny
model, and checks that it now gives the exact result or a one-line refusal
that names the cause.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from experiments import ablation
import data
import finetune
import glue
import runtime
import train
from checkpoint import latest_checkpoint
from model import MaskedLM
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent.parent


def argv(tiny_checkpoint, tiny_corpus, out, *extra):
    return ["--preset", "tiny", "--model", str(tiny_checkpoint), "--corpus", str(tiny_corpus),
            "--out", str(out), "--cache-dir", str(out.parent / "cache"), "--device", "cpu", "--quiet", *extra]


def same_weights(a, b):
    a, b = (load_file(latest_checkpoint(out) / "model.safetensors") for out in (a, b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def log_of(out):
    """The run's log.jsonl without the timing, which no two runs share."""
    lines = (out / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"} for line in lines]


class Sneaky:
    """An object whose unpickling runs a command: what a tampered checkpoint could hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ----------------------------------------------------------------- interrupts


def test_ctrl_c_after_an_update_stops_after_that_step_and_resumes_exactly(tmp_path, tiny_checkpoint,
                                                                          tiny_corpus, monkeypatch, capsys):
    """Ctrl-C between an update and the step counter: the step completes, is saved once, and exits 130."""
    common = ["--steps", "8", "--save-every", "5", "--eval-every", "100"]
    train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "whole", *common))
    real_step, updates, saves = runtime.optimizer_step, [], []

    def then_ctrl_c(*args, **kwargs):
        norm = real_step(*args, **kwargs)
        updates.append(1)
        if len(updates) == 5:  # the fifth update is done; the loop has not counted it yet
            os.kill(os.getpid(), signal.SIGINT)
        return norm

    real_save = MaskedLM.save_pretrained
    monkeypatch.setattr(runtime, "optimizer_step", then_ctrl_c)
    monkeypatch.setattr(MaskedLM, "save_pretrained", lambda m, folder: (saves.append(Path(folder).name),
                                                                          real_save(m, folder))[1])
    split = tmp_path / "split"
    with pytest.raises(SystemExit) as stopped:
        train.main(argv(tiny_checkpoint, tiny_corpus, split, *common))
    assert stopped.value.code == 130
    assert f"interrupted at step 5 of 8; saved {split / 'step-0000005'}; continue with --resume" in \
        capsys.readouterr().out
    assert latest_checkpoint(split).name == "step-0000005"
    assert saves == [".step-0000005.tmp"]  # the periodic save, not written (nor removed) again by the stop
    monkeypatch.undo()
    train.main(argv(tiny_checkpoint, tiny_corpus, split, *common, "--resume"))
    assert same_weights(tmp_path / "whole", split)


def test_ctrl_c_in_a_shell_exits_130_with_a_checkpoint(tmp_path, tiny_checkpoint, tiny_corpus):
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"),
               *argv(tiny_checkpoint, tiny_corpus, out, "--steps", "100000", "--save-every", "1")]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "latest").exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr[-2000:]
    assert "interrupted at step" in stdout and "continue with --resume" in stdout
    assert (latest_checkpoint(out) / "model.safetensors").is_file()


def test_a_failed_stage_is_not_taken_for_a_finished_one(tmp_path, tiny_checkpoint):
    """ablation.py runs train.py as a command; a stage that does not end well stops it, unrecorded."""
    out = tmp_path / "ablation"
    args = ablation.parse_args(["--model", str(tiny_checkpoint), "--corpus", str(tmp_path / "missing.txt"),
                                "--out", str(out), "--device", "cpu", "--quiet"])
    with pytest.raises(SystemExit, match="python train.py exited with status 1; the stage is not done"):
        ablation.pretrain(args, "random", tiny_checkpoint, ablation.VARIANTS["random"][1], 2)
    assert not (out / "pretrain" / "random" / "summary.json").exists()
    assert not (out / "pretrain" / "random" / "provenance.json").exists()


# ----------------------------------------------------------------- resume


def test_resume_reads_no_code(tmp_path, tiny_checkpoint, tiny_corpus):
    out, marker = tmp_path / "run", tmp_path / "ran"
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "2"))
    path = latest_checkpoint(out) / "training_state.pt"
    state = torch.load(path, weights_only=True)
    state["extra"] = Sneaky(marker)
    torch.save(state, path)
    refused = r"training_state.pt: not a training state of this project .*refusing"
    with pytest.raises(SystemExit, match=refused):
        train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "4", "--resume"))
    assert not marker.exists()


def test_a_weights_file_that_holds_code_is_refused_with_its_name(tmp_path, tiny_checkpoint):
    marker = tmp_path / "ran"
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    torch.save({"x": Sneaky(marker)}, tmp_path / "model" / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model.bin: not a plain file of weights"):
        MaskedLM.from_pretrained(tmp_path / "model")
    assert not marker.exists()


def test_resume_refuses_other_settings_and_allows_the_changeable_ones(tmp_path, tiny_checkpoint, tiny_corpus,
                                                                     capsys):
    out = tmp_path / "run"
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "2"))
    with pytest.raises(SystemExit, match=r"other inputs or settings .*\(--lr 0.001 there, 0.005 now; "
                                         r'--masking "informative" there, "random" now\)'):
        train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "4", "--resume", "--lr", "5e-3",
                        "--masking", "random"))
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "4", "--resume", "--log-every", "1",
                    "--eval-every", "3", "--save-every", "2"))
    assert latest_checkpoint(out).name == "step-0000004"
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    assert "may change only --steps, --log-every, --eval-every" in " ".join(capsys.readouterr().out.split())


def test_a_resumed_run_logs_each_step_once(tmp_path, tiny_checkpoint, tiny_corpus, monkeypatch):
    common = ["--steps", "8", "--save-every", "5", "--log-every", "1", "--eval-every", "3"]
    train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "whole", *common))
    real = runtime.step_generator

    def crash_in_step_7(seed, step, micro, device):
        if step == 6:
            raise OSError("the machine went down (simulated)")
        return real(seed, step, micro, device)

    monkeypatch.setattr(runtime, "step_generator", crash_in_step_7)
    with pytest.raises(OSError, match="simulated"):
        train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "split", *common))
    monkeypatch.setattr(runtime, "step_generator", real)
    train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "split", *common, "--resume"))
    assert log_of(tmp_path / "split") == log_of(tmp_path / "whole")


def test_one_run_at_a_time_in_a_run_folder(tmp_path, tiny_checkpoint, tiny_corpus, capsys):
    out = tmp_path / "run"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / ".lock").write_text(f"{other.pid} {socket.gethostname()}\n")
        with pytest.raises(SystemExit, match=rf"in use by another run \(process {other.pid}\)"):
            train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "2"))
    finally:
        other.kill()
        other.wait()
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "2"))  # its process is gone: taken over
    assert f"taking over the lock of process {other.pid}" in capsys.readouterr().out
    assert not (out / ".lock").exists()  # released at the end


def test_a_stale_checkpoint_never_displaces_the_one_latest_names(tmp_path, tiny_checkpoint, tiny_corpus):
    """Checkpoints beyond `latest` (a run that crashed before pointing at them) go; `latest` never does."""
    out = tmp_path / "run"
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "6", "--save-every", "3"))
    for stale in ("step-0000010", "step-0000015"):
        (out / stale).mkdir()
    (out / "latest").write_text("step-0000003\n")  # as if step 6 was never pointed at
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "6", "--save-every", "3", "--resume"))
    assert sorted(p.name for p in out.glob("step-*")) == ["step-0000003", "step-0000006"]
    assert latest_checkpoint(out).name == "step-0000006"


# ----------------------------------------------------------------- presets


@pytest.mark.parametrize("typed, key, value", [(["--lr", "5e-3"], "lr", 5e-3), (["--lr=5e-3"], "lr", 5e-3),
                                               (["--ste", "7"], "steps", 7), (["--ste=7"], "steps", 7)])
def test_a_preset_never_drops_what_the_user_typed(typed, key, value):
    args, _ = train.parse_args(["--preset", "demo", *typed])
    assert getattr(args, key) == value and args.batch_size == 16  # the rest of the preset still applies
    args = ablation.parse_args(["--preset", "small", *typed])
    assert getattr(args, key) == value and args.batch_size == 16


# ----------------------------------------------------------------- the held-out split


def test_one_long_document_cannot_take_the_held_out_share(tmp_path, tiny_checkpoint, tiny_corpus):
    tok = Tokenizer(tiny_checkpoint)
    long = " ".join(["the old cat saw a dog near the river ."] * 20000)  # 200,000 tokens in one document
    alone = tmp_path / "alone.txt"
    alone.write_text(long + "\n", encoding="utf-8")
    mixed = tmp_path / "mixed.txt"  # and among 120 short ones
    mixed.write_text(tiny_corpus.read_text() + "\n" + long + "\n", encoding="utf-8")
    for corpus in (alone, mixed):
        for seed in range(3):  # each piece of 8 blocks is held out with probability 0.01
            train_set, held, _ = data.load_corpus(str(corpus), tok, 32, 64, 0.01, tmp_path / "cache", seed)
            assert len(train_set) > 6000 and 0.004 < len(held) / (len(train_set) + len(held)) < 0.02


def test_a_run_without_held_out_blocks_skips_what_needs_them(tmp_path, tiny_checkpoint, tiny_corpus, capsys):
    out = tmp_path / "run"
    history = train.main(argv(tiny_checkpoint, tiny_corpus, out, "--heldout", "0", "--steps", "3"))
    assert "no held-out blocks (--heldout 0): the held-out evaluations and the score page are skipped" in \
        capsys.readouterr().out
    assert [e for e in history if "eval_loss" in e] == [] and not (out / "scores.html").exists()
    assert latest_checkpoint(out).name == "step-0000003"


# ----------------------------------------------------------------- options out of range


@pytest.mark.parametrize("option, message", [
    (["--informative-fraction", "1.5"], "argument --informative-fraction: 1.5 is not in [0, 1]"),
    (["--ratio", "0"], "argument --ratio: 0 is not in (0, 1]"),
    (["--ratio", "1.5"], "argument --ratio: 1.5 is not in (0, 1]"),
    (["--alpha", "-0.1"], "argument --alpha: -0.1 is not in [0, 1]"),
    (["--head-steps", "-1"], "argument --head-steps: -1 is not in [0, inf)"),
    (["--eval-blocks", "0"], "argument --eval-blocks: 0 is not in [1, inf)"),
    (["--threshold", "0.5"], "--threshold 0.5 is used only with --select threshold"),
    (["--clip", "-1"], "argument --clip: -1 is not in [0, inf)"),
    (["--batch-size", "0"], "argument --batch-size: 0 is not in [1, inf)"),
    (["--log-every", "0"], "argument --log-every: 0 is not in [1, inf)"),
    (["--eval-every", "0"], "argument --eval-every: 0 is not in [1, inf)"),
    (["--save-every", "0"], "argument --save-every: 0 is not in [1, inf)"),
    (["--steps", "0"], "--steps 0 and --head-steps 0: there is nothing to train"),
    (["--steps", "-1"], "argument --steps: -1 is not in [0, inf)"),
    (["--informative-split", "0.8", "0.1", "0.2"],
     "--informative-split 0.8 0.1 0.2: the three shares must sum to 1"),
])
def test_options_out_of_range_are_refused_at_parse_time(option, message, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(option)
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {message}")


@pytest.mark.parametrize("option, message", [
    (["--max-length", "0"], "argument --max-length: 0 is not in [1, inf)"),
    (["--max-length", "65"], "argument --max-length: 65 is more than the model's 64 positions"),
    (["--max-train", "-1"], "argument --max-train: -1 is not in [0, inf)"),
])
def test_finetune_options_out_of_range_are_refused(option, message, tiny_checkpoint, capsys):
    with pytest.raises(SystemExit):
        finetune.parse_args(["--model", str(tiny_checkpoint), "--task", "CB", *option])
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {message}")


def test_a_null_text_field_is_named_with_its_file_and_line(tmp_path):
    rows = [{"premise": "A dog ran.", "hypothesis": "A dog moved.", "label": "entailment", "idx": 0},
            {"premise": None, "hypothesis": "A cat sat.", "label": "neutral", "idx": 1}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    named = r"train.jsonl:2: field premise is null, expected a string"
    with pytest.raises(glue.FormatError, match=named):
        glue.read_examples("CB", tmp_path, "train")


@pytest.mark.parametrize("rule", ["threshold", "function"])
def test_a_run_that_masks_nothing_stops_and_says_why(rule, tmp_path, tiny_checkpoint, tiny_corpus):
    nothing = tmp_path / "nothing.py"
    nothing.write_text("def nothing(batch):\n    return batch.maskable & False\n")
    options = (["--select", "threshold", "--threshold", "1e9"] if rule == "threshold"
               else ["--masking-fn", f"{nothing}:nothing"])
    said = r"no token was masked in steps 1-5 \(method\): the masking rule selects nothing"
    with pytest.raises(SystemExit, match=said):
        train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "run", *options, "--log-every", "1"))


def test_a_step_that_masks_nothing_is_reported_once(tmp_path, tiny_checkpoint, tiny_corpus, capsys):
    late = tmp_path / "late.py"
    late.write_text("def late(batch):  # nothing at the first step of the method, the budget after\n"
                    "    return batch.maskable & (batch.scores() > 0) & (batch.progress > 0)\n")
    train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "run", "--masking-fn", f"{late}:late",
                    "--log-every", "1", "--steps", "4"))
    printed = capsys.readouterr().out
    assert printed.count("masked no token") == 1 and "1 of the 1 steps to step 1 masked no token" in printed


# ----------------------------------------------------------------- the ablation's results


def test_the_ablation_writes_to_runs_and_keeps_committed_results(capsys):
    assert ablation.parse_args([]).out == Path("runs/ablation-small")
    committed = ROOT / "results" / "ablation-small"
    assert (committed / "results.json").is_file()  # the premise: a committed result
    with pytest.raises(SystemExit):
        ablation.parse_args(["--out", str(committed)])
    assert "holds a committed result" in capsys.readouterr().err
    assert ablation.parse_args(["--out", str(committed), "--force"]).out == committed


def test_processes_that_do_not_share_a_filesystem_are_told_what_to_share(tmp_path):
    """Two processes, as torchrun starts them, where each sees a folder of its own: both stop, and say so."""
    script = ("import os, sys; sys.path.insert(0, os.getcwd()); import runtime\n"
              "machine = runtime.setup('cpu', 'fp32')\n"
              "machine.check_shared(sys.argv[1])\nprint('shared')\n"
              "machine.leave()\n")  # as train.py does: left to the exit, Gloo's teardown can abort
    port = str(29600 + os.getpid() % 300)

    def both(folders):
        def env(rank):
            return dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank),
                        LOCAL_RANK=str(rank), WORLD_SIZE="2")
        children = [subprocess.Popen([sys.executable, "-c", script, str(folders[rank])], cwd=ROOT, text=True,
                                     env=env(rank), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    for rank in (0, 1)]
        return [c.communicate(timeout=120) + (c.returncode,) for c in children]

    shared = both([tmp_path / "run", tmp_path / "run"])
    assert [r[0].strip() for r in shared] == ["shared", "shared"] and [r[2] for r in shared] == [0, 0]
    apart = both([tmp_path / "node0", tmp_path / "node1"])
    assert [r[2] for r in apart] == [1, 1]
    assert f"process 1 of 2: does not see {tmp_path / 'node1'}" in apart[1][1]
    assert "put --out and the corpus cache" in apart[0][1]
