"""train.py --objective electra on the tiny model: the loop self-evolution runs in, with the same guarantees
(exact resume, two processes equal one, the precisions, --compile); a checkpoint that holds both models as
Hugging Face folders, which finetune.py fine-tunes; and what is refused, in one line that names it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import electra
import finetune
import mcl
import runtime
import train
from checkpoint import latest_checkpoint, read_record, resolve_checkpoint
from model import Discriminator, SequenceClassifier
from test_finetune import write_learnable_tasks
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
# The tiny BERT has no discriminator head: every run starts one, and says so (tested in test_electra.py).
pytestmark = pytest.mark.filterwarnings("ignore:.*the checkpoint has no discriminator head")


def argv(tiny_checkpoint, tiny_corpus, out, *extra):
    return ["--preset", "tiny", "--objective", "electra", "--model", str(tiny_checkpoint), "--corpus",
            str(tiny_corpus), "--out", str(out), "--cache-dir", str(out.parent / "cache"), "--device", "cpu",
            "--quiet", *extra]


def final_weights(out):
    """Both models' tensors in the run's latest checkpoint, as {"discriminator/name": tensor, ...}."""
    step = latest_checkpoint(out)
    return {f"{part}/{name}": t for part in ("discriminator", "generator")
            for name, t in load_file(step / part / "model.safetensors").items()}


def assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys() and len(a) > 20
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


def log_of(out):
    """The run's log.jsonl without the timing, which no two runs share."""
    lines = (out / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"} for line in lines]


# -- 1. a run: what it trains, shows and keeps ---------------------------------------------------------


def test_a_run_trains_both_models_and_reports_detection(tmp_path, tiny_checkpoint, tiny_corpus, capsys):
    out = tmp_path / "run"
    history = train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "20", "--eval-every", "10",
                              "--log-every", "1", "--lr", "3e-3", "--schedule", "constant"))
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 20 and sum(losses[-5:]) < 0.8 * sum(losses[:5])
    evals = [h for h in history if "rtd_f1" in h]
    assert [(e["phase"], e["step"]) for e in evals] == [("start", 0), ("method", 10), ("end", 20)]
    start, end = evals[0], evals[-1]
    assert 0.05 < start["rtd_share_replaced"] < 0.15  # at most the 15% masked: some samples are the original
    assert start["rtd_baseline_accuracy"] == pytest.approx(1 - start["rtd_share_replaced"])
    assert end["generator_accuracy"] > start["generator_accuracy"] + 0.1  # G learns its MLM
    assert end["rtd_accuracy"] > start["rtd_accuracy"]  # D learns at least the classes' prior
    printed = capsys.readouterr().out
    assert "held-out replaced-token detection (start, step 0 -> end, step 20):" in printed
    assert "D's F1 on the replaced class (the all-\"original\" baseline's: 0)" in printed
    assert printed.count("G's samples at masked positions") == 2  # at the start and at step 20
    assert "the start: G's samples" in printed and "step 20: G's samples" in printed
    assert f"checkpoint: {latest_checkpoint(out)}" in printed
    assert "ELECTRA: electra_lambda=50.0" in printed and "method:" not in printed  # the settings shown
    assert not (out / "curves.png").exists() and not (out / "scores.html").exists()  # MLM's, SE's


def test_the_checkpoint_holds_both_models_as_hugging_face_folders(tmp_path, tiny_checkpoint, tiny_corpus):
    out = tmp_path / "run"
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "3"))
    step = latest_checkpoint(out)
    architectures = {"discriminator": "ElectraForPreTraining", "generator": "ElectraForMaskedLM"}
    for part, architecture in architectures.items():
        files = {p.name for p in (step / part).iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
        assert json.loads((step / part / "config.json").read_text())["architectures"] == [architecture]
        assert Tokenizer(step / part).vocab_size == 101
    assert (step / "training_state.pt").is_file() and not (step / "config.json").exists()
    # the run folder, or its step-N/, stands for the discriminator: the model that ELECTRA keeps
    assert resolve_checkpoint(out) == resolve_checkpoint(step) == step / "discriminator"
    pair = electra.ElectraPretraining.from_pretrained(step)
    ids = Tokenizer(out)(["the old cat saw a dog near the river ."])["input_ids"]
    with torch.no_grad():
        assert torch.equal(Discriminator.from_pretrained(out)(ids), pair.discriminator(ids))
    weights = final_weights(out)  # the shared embeddings, one copy in each folder
    name = "electra.embeddings.word_embeddings.weight"
    assert torch.equal(weights[f"discriminator/{name}"], weights[f"generator/{name}"])
    record = read_record(step)  # what the run was made from: ELECTRA's settings, none of SE's
    assert record["settings"]["objective"] == "electra" and record["settings"]["electra_lambda"] == 50.0
    assert record["inputs"].keys() == {"corpus", "generator"} and record["inputs"]["generator"] is None
    assert not {"ratio", "smoothing", "head_steps", "questioning_precision"} & record["settings"].keys()


def test_the_optimizer_gives_both_heads_groups_of_their_own():
    """runtime.make_optimizer's "head" groups: everything outside both encoders (D's detection head, G's
    MLM head); the shared embeddings are in the encoders' groups, once."""
    pair = electra.ElectraPretraining.build(FIXTURES / "electra-disc-tiny")
    optimizer = runtime.make_optimizer(pair, 1e-3)
    name = {id(p): n for n, p in pair.named_parameters()}
    heads = sorted(name[id(p)] for g in optimizer.param_groups if g["head"] for p in g["params"])
    assert heads == ["discriminator.dense.bias", "discriminator.dense.weight", "discriminator.prediction.bias",
                     "discriminator.prediction.weight", "generator.decoder.bias", "generator.dense.bias",
                     "generator.dense.weight", "generator.norm.bias", "generator.norm.weight"]
    counted = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(counted) == len({id(p) for p in counted}) == len(list(pair.parameters()))


def test_a_run_starts_from_an_electra_discriminator_and_generator(tmp_path, tiny_checkpoint, tiny_corpus):
    """D from an ELECTRA discriminator (E != H), G from an ELECTRA generator checkpoint: G's own weights are
    the checkpoint's at the start, and both train."""
    disc = tmp_path / "disc"
    shutil.copytree(FIXTURES / "electra-disc-tiny", disc)
    shutil.copy(tiny_checkpoint / "vocab.txt", disc)  # the tiny vocabulary of 101 entries
    gen = FIXTURES / "electra-gen-tiny"
    out = tmp_path / "run"
    train.main(argv(disc, tiny_corpus, out, "--generator", str(gen), "--steps", "2"))
    started, trained = load_file(gen / "model.safetensors"), final_weights(out)
    assert trained.keys() >= {f"generator/{k}" for k in started}
    moved = [k for k in started if not torch.equal(started[k], trained[f"generator/{k}"])]
    assert {"generator_predictions.dense.weight", "electra.encoder.layer.0.output.dense.weight"} <= set(moved)
    config = json.loads((latest_checkpoint(out) / "generator" / "config.json").read_text())
    assert (config["hidden_size"], config["embedding_size"]) == (8, 16)


def test_finetune_fine_tunes_the_discriminator(tmp_path, tiny_checkpoint, tiny_corpus):
    """finetune.py --model <an ELECTRA run folder>: ELECTRA's classifier on the discriminator's encoder."""
    out = tmp_path / "run"
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "2"))
    discriminator = latest_checkpoint(out) / "discriminator"
    with pytest.warns(UserWarning, match="no classification head .*classifier.dense"):
        classifier = SequenceClassifier.from_pretrained(out, num_labels=2)
    ids = Tokenizer(out)(["the red dog ran ."])["input_ids"]
    with torch.no_grad():
        assert torch.equal(classifier.encoder(ids), Discriminator.from_pretrained(out).encoder(ids))
    assert classifier.config.model_type == "electra" and classifier.act is torch.nn.functional.gelu
    root = write_learnable_tasks(tmp_path / "data")  # dev = train: chance is 0 Matthews correlation
    reports = finetune.main(["--model", str(out), "--task", "CoLA", "--data-root", str(root), "--seeds", "1",
                             "--epochs", "6", "--batch-size", "8", "--lr", "1e-2", "--device", "cpu",
                             "--quiet"])
    assert reports[0]["model"] == str(discriminator) and reports[0]["mean"]["mcc"] > 0.5


# -- 2. the guarantees of the loop, on this objective ------------------------------------------------


def resumed_equals_uninterrupted(tmp_path, tiny_checkpoint, tiny_corpus, monkeypatch, common, stop):
    """A run stopped by Ctrl-C in the middle of step `stop`, then resumed, ends with the weights and the
    log of the same run uninterrupted (test_mcl.py calls it with the courses on)."""
    train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "whole", *common))
    real = runtime.step_generator

    def stop_there(seed, step, micro, device):  # Ctrl-C in the middle of step `stop`
        if step == stop and micro == 1:
            raise KeyboardInterrupt
        return real(seed, step, micro, device)

    monkeypatch.setattr(runtime, "step_generator", stop_there)
    with pytest.raises(SystemExit) as stopped:
        train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "split", *common))
    assert stopped.value.code == 130 and latest_checkpoint(tmp_path / "split").name == f"step-{stop:07d}"
    monkeypatch.setattr(runtime, "step_generator", real)
    train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "split", *common, "--resume"))
    assert_same_weights(final_weights(tmp_path / "whole"), final_weights(tmp_path / "split"))
    assert log_of(tmp_path / "split") == log_of(tmp_path / "whole")  # evaluations of both halves included


def test_resume_equals_uninterrupted(tmp_path, tiny_checkpoint, tiny_corpus, monkeypatch):
    common = ["--steps", "8", "--save-every", "100", "--eval-every", "3", "--log-every", "1",
              "--micro-batch-size", "4"]
    resumed_equals_uninterrupted(tmp_path, tiny_checkpoint, tiny_corpus, monkeypatch, common, stop=4)


def two_processes_equal_one(tmp_path, tiny_checkpoint, tiny_corpus, common, port):
    """Two torchrun processes end with one process's weights and losses, to float rounding."""
    train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "single", *common))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(ROOT / "train.py"), *argv(tiny_checkpoint, tiny_corpus, tmp_path / "ddp", *common)]
    done = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(final_weights(tmp_path / "single"), final_weights(tmp_path / "ddp"), atol=1e-5)
    losses = lambda name: [e["loss"] for e in log_of(tmp_path / name) if "loss" in e]  # noqa: E731
    assert losses("single") == pytest.approx(losses("ddp"), abs=1e-5)


def test_torchrun_two_processes_equal_one(tmp_path, tiny_checkpoint, tiny_corpus):
    two_processes_equal_one(tmp_path, tiny_checkpoint, tiny_corpus, ["--steps", "4", "--micro-batch-size", "4"],
                            port=29519)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_paths_train(tmp_path, tiny_checkpoint, tiny_corpus, precision):
    """Autocast (and, for fp16, the gradient scaler) on CPU: the paths a GPU takes; G's samples are drawn
    in float32 whatever the precision (electra.gumbel_max)."""
    out = tmp_path / "run"
    history = train.main(argv(tiny_checkpoint, tiny_corpus, out, "--precision", precision, "--steps", "10",
                              "--lr", "3e-3", "--log-every", "1", "--eval-every", "100"))
    losses = [h["loss"] for h in history if "loss" in h]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert [h["phase"] for h in history if "rtd_f1" in h] == ["start", "end"]
    scaler = torch.load(latest_checkpoint(out) / "training_state.pt", weights_only=False)["scaler"]
    assert (scaler.get("scale") is not None) == (precision == "fp16")


def test_compile_trains_like_eager(tmp_path, tiny_checkpoint, tiny_corpus):
    """--compile computes the same steps. Dropout is off: compiled dropout draws its own random numbers."""
    common = ["--steps", "3", "--dropout", "0", "--eval-every", "100"]
    train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "eager", *common))
    from torch._dynamo.utils import counters
    counters.clear()
    train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "compiled", *common, "--compile"))
    assert counters["stats"]["unique_graphs"] >= 1  # the steps did run through compiled code
    assert_same_weights(final_weights(tmp_path / "eager"), final_weights(tmp_path / "compiled"), atol=1e-5)


# -- 3. refused, in one line that names it ------------------------------------------------------------


@pytest.mark.parametrize("options, message", [
    (["--objective", "electra", "--ratio", "0.2"],
     "--ratio: self-evolution's, meaningless with --objective electra"),
    (["--objective", "electra", "--ratio", "0.15"], "--ratio: self-evolution's"),  # typed, at its default
    (["--objective", "electra", "--head-steps", "10", "--smoothing", "none"],
     "--smoothing, --head-steps: self-evolution's, meaningless with --objective electra"),
    (["--preset", "demo", "--objective", "electra"],
     "--head-steps (from --preset demo), --head-lr (from --preset demo): self-evolution's"),
    (["--electra-lambda", "20"], "--electra-lambda: ELECTRA's, meaningless with --objective se"),
    (["--preset", "electra", "--objective", "se", "--generator", "g"], "--generator: ELECTRA's"),
    (["--objective", "electra", "--electra-lambda", "0"], "argument --electra-lambda: 0 is not in (0, inf)"),
    (["--objective", "electra", "--electra-lambda", "-1"], "argument --electra-lambda: -1 is not in (0, inf)"),
    (["--objective", "electra", "--electra-mask-ratio", "1"],
     "argument --electra-mask-ratio: 1 is not in (0, 1)"),
    (["--objective", "electra", "--generator", "g", "--generator-size", "0.5"],
     "--generator-size 0.5 sizes a fresh generator; --generator g has its own size"),
    (["--preset", "electra-base"], "--preset electra-base needs a corpus of your own (--corpus FILE ...)"),
])
def test_options_that_mean_nothing_or_are_out_of_range_are_refused(options, message, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(options)
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_the_presets_parse():
    args, objective = train.parse_args(["--preset", "electra"])
    assert (args.objective, args.model, args.head_steps) == ("electra", "minilm", 0)
    assert objective == mcl.Courses() and objective.plain  # the authors' settings, no course of MCL's
    args, _ = train.parse_args(["--preset", "electra-base", "--corpus", "my_text.txt"])
    assert (args.batch_size, args.micro_batch_size, args.block_length, args.lr) == (256, 32, 512, 2e-4)
    assert train.parse_args([])[0].objective == "se"


def generator_folder(tmp_path, **changes):
    folder = tmp_path / "generator"
    shutil.copytree(FIXTURES / "electra-gen-tiny", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


@pytest.mark.parametrize("changes, message", [
    (dict(vocab_size=102), "its vocab size is 102, the discriminator's 101"),
    ({}, r"its embedding size \(width\) is 16, the discriminator's 32"),  # the tiny BERT's embeddings: 32
])
def test_a_generator_that_cannot_share_the_embeddings_is_refused(tmp_path, tiny_checkpoint, tiny_corpus,
                                                                 changes, message):
    folder = generator_folder(tmp_path, **changes)
    with pytest.raises(SystemExit, match=rf"^error: --generator {folder}: {message}; the two must share"):
        train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "run", "--generator", str(folder)))
    assert not list((tmp_path / "run").glob("step-*"))


def test_a_resume_keeps_the_objective_and_its_settings(tmp_path, tiny_checkpoint, tiny_corpus):
    out = tmp_path / "run"
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "2"))
    with pytest.raises(SystemExit, match=r"cannot resume .*--electra-lambda 50.0 there, 20.0 now"):
        train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "4", "--resume",
                        "--electra-lambda", "20"))
    se_argv = [w for w in argv(tiny_checkpoint, tiny_corpus, out) if w not in ("--objective", "electra")]
    with pytest.raises(SystemExit, match=r'cannot resume .*--objective "electra" there, "se" now'):
        with pytest.warns(UserWarning, match="no MLM head"):  # the discriminator's folder, read as an MLM
            train.main([*se_argv, "--steps", "4", "--resume"])
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "4", "--resume"))
    assert latest_checkpoint(out).name == "step-0000004"
