"""No silent wrong run, round two: each case reproduces, on the tiny fixtures, a way a run ended in a
wrong result with exit 0, and checks that it is now refused with a message that names the cause.

1. non-finite numbers: options, a diverging run, files that hold NaN, evaluations of NaN outputs
2. artifacts reused by what they were made from, not by their names: a run folder, the corpus cache,
   the stages of the studies
3. files checked against what they claim: prompts, teachers, heads, masking rules, submissions
4. crashes that name nothing: each now one line naming the file (and line or tensor) and what was expected
"""

import errno
import json
import os
import re
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import checkpoint
import data
import finetune
import glue
import probe
import runtime
import self_evolution as se
import train
from experiments import ablation, transfer
from model import MaskedLM, SequenceClassifier
from test_finetune import write_learnable_tasks
from test_prompts import write_tasks
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
    said = (r"steps \d+-\d+: the loss or the gradient norm was not finite in \d+ of them; training diverged, "
            r".* the last good checkpoint is none\. Lower --lr")
    with pytest.raises(SystemExit, match=said):
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
        checkpoint.load_tuned(folder)
    save_file({"other": torch.zeros(1)}, str(folder / "prompt.safetensors"))
    with pytest.raises(ValueError, match=r"prompt.safetensors: no tensor 'prompt' \(it holds other\)"):
        checkpoint.load_prompt(folder, None, 4)


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


# ----------------------------------------------------------------- 2. a run folder, by what it was made from


def test_a_folder_with_a_dead_runs_files_is_refused_like_one_with_a_checkpoint(tmp_path, tiny_checkpoint,
                                                                             tiny_corpus):
    """A run killed before its first checkpoint left its offline scores and log; the next run took them."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "scores-step0.npy").write_bytes(b"")
    (out / "log.jsonl").write_text('{"step": 1, "phase": "method", "loss": 3.0}\n')
    with pytest.raises(SystemExit, match=r"holds the files of a run that saved no checkpoint \(log.jsonl, "
                                         r"scores-step0.npy\): delete them, or choose another --out"):
        train.main(argv(tiny_checkpoint, tiny_corpus, out, "--questioning", "offline"))


def test_a_resume_on_an_edited_corpus_is_refused(tmp_path, tiny_checkpoint, tiny_corpus):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(tiny_corpus.read_text())
    out = tmp_path / "run"
    train.main(argv(tiny_checkpoint, corpus, out, "--steps", "2"))
    documents = corpus.read_text().split("\n\n")
    corpus.write_text("\n\n".join(documents[::-1]))  # the same text, shuffled in place
    with pytest.raises(SystemExit, match=r"cannot resume from other inputs or settings than the checkpoint's "
                                         r"\(inputs corpus\); use the checkpoint's"):
        train.main(argv(tiny_checkpoint, corpus, out, "--steps", "4", "--resume"))


def test_a_resume_with_an_edited_masking_function_is_refused(tmp_path, tiny_checkpoint, tiny_corpus):
    rule = tmp_path / "rule.py"
    rule.write_text("def rule(batch):\n    return batch.maskable & (batch.input_ids % 3 == 0)\n")
    out = tmp_path / "run"
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "2", "--masking-fn", f"{rule}:rule"))
    rule.write_text("def rule(batch):\n    return batch.maskable & (batch.input_ids % 3 == 1)\n")
    with pytest.raises(SystemExit, match=r"\(inputs masking_fn\); use the checkpoint's"):
        train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "4", "--resume",
                        "--masking-fn", f"{rule}:rule"))


def test_every_artifact_a_later_command_reuses_has_one_record_of_what_it_was_made_from(
        tmp_path, tiny_checkpoint, tiny_corpus):
    """A checkpoint, the offline scores and the corpus cache each keep {"inputs", "settings"}. Scores whose
    record is not the run's are refused on resume: a later checkpoint cannot make them again."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    options = ["--questioning", "offline", "--cache-dir", str(cache)]
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "2", *options))
    corpus_hash = data.file_sha256(tiny_corpus)
    run = checkpoint.read_record(checkpoint.latest_checkpoint(out))
    assert run["inputs"] == {"corpus": [corpus_hash], "masking_fn": None}
    assert run["settings"]["questioning"] == "offline" and run["settings"]["steps"] == 2
    scores = checkpoint.read_record(out / "scores-step0.npy")
    assert scores["inputs"] == run["inputs"] and "steps" not in scores["settings"]  # a resume may change it
    assert (out / "scores-step0.provenance.json").is_file()
    cached = json.loads(next(cache.glob("blocks-*.json")).read_text())["provenance"]
    assert cached["inputs"]["corpus"] == [corpus_hash] and cached["settings"]["kinds"] == ["text"]
    (out / "scores-step0.provenance.json").write_text(json.dumps({**scores, "inputs": {"corpus": ["0" * 64]}}))
    with pytest.raises(SystemExit, match=r"scores-step0.npy: holds the offline scores made from other inputs or "
                                         r"settings \(inputs corpus\); they can be made again only by the run "
                                         r"from its start: start it again in another --out"):
        train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "3", "--resume", *options))
    (out / "scores-step0.provenance.json").unlink()
    with pytest.raises(SystemExit, match=r"scores-step0.npy: no record of what these scores were made from"):
        train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "3", "--resume", *options))


def test_a_jsonl_file_is_not_served_the_blocks_of_the_same_bytes_read_as_text(tmp_path, tiny_checkpoint):
    """The cache key left out the format: a .jsonl file got the text build of identical bytes."""
    lines = "".join(json.dumps({"text": f"the cat {w} a dog near the river ."}) + "\n"
                    for w in ["saw", "found", "took", "built"] * 15)
    text, jsonl = tmp_path / "corpus.txt", tmp_path / "corpus.jsonl"
    text.write_text(lines)
    jsonl.write_text(lines)
    tok = Tokenizer(tiny_checkpoint)
    as_text = data.load_corpus(str(text), tok, 16, 64, 0.0, tmp_path / "cache")[2]
    as_jsonl = data.load_corpus(str(jsonl), tok, 16, 64, 0.0, tmp_path / "cache")[2]
    assert (as_text["n_documents"], as_jsonl["n_documents"]) == (1, 60)


def test_special_token_strings_in_corpus_text_are_read_as_text(tmp_path, tiny_checkpoint):
    """A literal [MASK] or [PAD] in the text became the special id, which masking never makes a target."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"the cat [MASK] a dog [PAD] near the river {i} ." for i in range(40)))
    tok = Tokenizer(tiny_checkpoint)
    train_set, _, _ = data.load_corpus(str(corpus), tok, 16, 64, 0.0, tmp_path / "cache")
    ids = train_set.batch(np.arange(len(train_set)))
    assert not (ids == tok.mask_id).any() and not (ids == tok.pad_id).any()
    assert (ids == tok.tok.token_to_id("[UNK]")).any()  # the brackets are text now: unknown to the tiny vocab
    assert tok(["the [MASK] sat"])["input_ids"][0].tolist().count(tok.mask_id) == 1  # fill-mask keeps its mask


def test_finetune_on_a_run_that_is_still_training_uses_one_checkpoint(tmp_path, tiny_checkpoint):
    """`latest` was resolved once per use: the seeds trained step-15, step-30 and step-34."""
    run = tmp_path / "run"
    for step in ("step-0000001", "step-0000002"):
        shutil.copytree(tiny_checkpoint, run / step)
    (run / "latest").write_text("step-0000001\n")
    args = finetune.parse_args(["--model", str(run), "--task", "RTE"])
    (run / "latest").write_text("step-0000002\n")  # the run goes on saving
    assert args.model == str(run / "step-0000001")


def test_save_into_a_folder_that_holds_prompts_is_refused_unless_replaced(tmp_path, tiny_checkpoint, capsys):
    """--save overwrote the best prompt and kept the old run's seed-N/ beside the new, for --teachers."""
    (tmp_path / "prompts" / "RTE" / "seed-7").mkdir(parents=True)
    common = ["--model", str(tiny_checkpoint), "--task", "RTE", "--tuning", "prompt", "--save",
              str(tmp_path / "prompts")]
    said = refused(finetune.parse_args, common, capsys)
    assert said.endswith(f"--save {tmp_path / 'prompts'}: RTE already hold(s) saved prompts; a later --teachers "
                         "or --prompt-init would mix them with this run's: choose another folder, or --replace")
    assert finetune.parse_args([*common, "--replace"]).replace


# ----------------------------------------------------------------- 2. study stages, by what made them
# transfer.py's and ablation.py's stages: each keeps the record of what it was made from (checkpoint.provenance)
# and is reused only on a match; anything else is refused, naming what differs.



def copy_of(source, to):
    (shutil.copytree if source.is_dir() else shutil.copy)(source, to)
    return to


def nudged(model, to):
    """A copy of a checkpoint with one weight changed: another model under another name."""
    copy_of(model, to)
    weights = load_file(to / "model.safetensors")
    name = next(k for k in sorted(weights) if weights[k].is_floating_point())
    weights[name] = weights[name] + 0.01
    save_file(weights, str(to / "model.safetensors"))
    return to


def stages_forbidden(monkeypatch):
    """Make running any stage fail the test: what is asked must be reused or refused."""
    def ran(*argv):
        raise AssertionError(f"a stage ran: {argv}")
    monkeypatch.setattr(finetune, "main", ran)
    monkeypatch.setattr(ablation, "run_script", ran)


def fingerprints_counted(monkeypatch):
    """Every file hashed in this test (data.file_sha256, under checkpoint.fingerprint), in order."""
    hashed, real = [], data.file_sha256
    monkeypatch.setattr(data, "file_sha256", lambda path: hashed.append(str(path)) or real(path))
    return hashed


def refusal(folder, what, differs):
    """The refusal of a stage: each of `differs` ("inputs corpus", "settings seeds") named, in order (a
    setting with its values there and now)."""
    named = ".*".join(re.escape(d) for d in differs.split(", "))
    return re.escape(f"{folder}: holds {what} made from other inputs or settings (") + named + r".*\); "


def transfer_argv(model, root, out, *extra):
    return ["--model", str(model), "--targets", "WSC", "--sources", "WNLI", "--seeds", "1", "--epochs", "1",
            "--full-epochs", "1", "--source-epochs", "1", "--prompt-length", "2", "--batch-size", "16",
            "--data-root", str(root), "--device", "cpu", "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def transfer_study(tmp_path_factory, tiny_checkpoint):
    """A finished transfer study on tiny tasks (WSC from WNLI, one seed): its folder, argv and README."""
    tmp = tmp_path_factory.mktemp("transfer-study")
    root, model = write_tasks(tmp / "data", n=16), copy_of(tiny_checkpoint, tmp / "model")
    argv = transfer_argv(model, root, tmp / "out")
    transfer.main(argv)
    return SimpleNamespace(tmp=tmp, root=root, model=model, out=tmp / "out", argv=argv,
                           readme=(tmp / "out" / "README.md").read_text())


def test_transfer_refuses_stages_made_from_another_model(transfer_study, tmp_path, monkeypatch):
    """Another --model trained nothing and wrote the new model's name above the old numbers."""
    stages_forbidden(monkeypatch)
    other = nudged(transfer_study.model, tmp_path / "other-model")
    s = transfer_study
    said = refusal(s.out / "source-WNLI", "the stage source-WNLI", "inputs model")
    with pytest.raises(SystemExit, match=said):
        transfer.main(transfer_argv(other, s.root, s.out))
    assert (s.out / "README.md").read_text() == s.readme


@pytest.mark.parametrize("changed, stage, differs", [
    (["--epochs", "2"], "prompt-WSC", "settings epochs"), (["--lr", "0.02"], "source-WNLI", "settings lr"),
    (["--full-epochs", "2"], "full-WSC", "settings epochs"),
    (["--full-lr", "1e-3"], "full-WSC", "settings lr"),
    (["--source-epochs", "2"], "source-WNLI", "settings epochs"),
    (["--seeds", "1", "2"], "full-WSC", "settings seeds"),  # the sources' prompts are tuned with the first
    (["--distill-scale", "0.5"], "panda-WNLI-WSC", "settings distill-scale"),
], ids=["epochs", "lr", "full-epochs", "full-lr", "source-epochs", "seeds", "distill-scale"])
def test_transfer_refuses_stages_made_with_other_settings(transfer_study, changed, stage, differs,
                                                          monkeypatch):
    """Other epochs or learning rates reused every stage: each stage they decide is refused, naming them."""
    stages_forbidden(monkeypatch)
    s = transfer_study
    with pytest.raises(SystemExit, match=refusal(s.out / stage, f"the stage {stage}", differs)):
        transfer.main(s.argv + changed)
    assert (s.out / "README.md").read_text() == s.readme


def test_transfer_refuses_stages_whose_task_files_differ(transfer_study, tmp_path, monkeypatch):
    """Another --data-root (not in the settings) reused every stage: its task files are now compared."""
    stages_forbidden(monkeypatch)
    s = transfer_study
    other = copy_of(s.root, tmp_path / "other-data")
    dev = other / "superglue" / "WSC" / "val.jsonl"
    dev.write_text("".join(dev.read_text().splitlines(keepends=True)[1:]))  # one row less
    with pytest.raises(SystemExit, match=refusal(s.out / "full-WSC", "the stage full-WSC", "inputs data")):
        transfer.main(transfer_argv(s.model, other, s.out))


def test_transfer_refuses_a_stage_whose_starting_prompt_changed(transfer_study, tmp_path, monkeypatch):
    """The prompt a stage started from is part of what it was made from: a changed one is named."""
    stages_forbidden(monkeypatch)
    s = transfer_study
    out = copy_of(s.out, tmp_path / "out")
    prompt = out / "source-WNLI" / "prompts" / "WNLI" / "prompt.safetensors"
    tensors = load_file(prompt)
    save_file({**tensors, "prompt": tensors["prompt"] + 0.01}, str(prompt))
    with pytest.raises(SystemExit, match=refusal(out / "transfer-WNLI-WSC", "the stage transfer-WNLI-WSC",
                                                 "inputs prompt-init")):
        transfer.main(transfer_argv(s.model, s.root, out))


def test_transfer_reuses_stages_made_from_the_same_content_under_other_names(transfer_study, tmp_path,
                                                                           monkeypatch):
    """Copies of the model and the data: every stage reused, each input hashed once in the command."""
    stages_forbidden(monkeypatch)
    hashed = fingerprints_counted(monkeypatch)
    s = transfer_study
    model, root = copy_of(s.model, tmp_path / "model"), copy_of(s.root, tmp_path / "data")
    text = transfer.main(transfer_argv(model, root, copy_of(s.out, tmp_path / "out")))
    assert text.split("\n- command")[0] == s.readme.split("\n- command")[0]
    # the model's files, two tasks' two files, the prompts' files: each read once in the command
    assert len(hashed) == len(set(hashed)) and {Path(h).name for h in hashed} >= {"model.safetensors",
                                                                                "train.jsonl", "val.jsonl"}


def test_transfer_redoes_a_stage_that_did_not_finish(transfer_study, tmp_path, monkeypatch):
    """A stage without its record (stopped before it was written) runs again, its leftovers cleared."""
    s = transfer_study
    out = copy_of(s.out, tmp_path / "out")
    (out / "panda-WNLI-WSC" / "provenance.json").unlink()
    ran, real = [], finetune.main
    monkeypatch.setattr(finetune, "main", lambda argv: ran.append(argv) or real(argv))
    transfer.main(transfer_argv(s.model, s.root, out))
    assert [argv[argv.index("--out") + 1] for argv in ran] == [str(out / "panda-WNLI-WSC" / "report.json")]
    assert (out / "panda-WNLI-WSC" / "provenance.json").is_file()


def ablation_argv(model, corpus, root, out, *extra):
    return ["--preset", "small", "--model", str(model), "--corpus", str(corpus), "--data-root", str(root),
            "--tasks", "CoLA", "--variants", "random", "--seeds", "1", "--steps", "2", "--warmup", "1",
            "--block-length", "32", "--batch-size", "4", "--heldout", "0.1", "--eval-blocks", "4",
            "--blimp-pairs", "2", "--ft-epochs", "1", "--max-train", "16", "--device", "cpu",
            "--cache-dir", str(out.parent / "cache"), "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def ablation_study(tmp_path_factory, tiny_checkpoint, tiny_corpus, tiny_blimp):
    """A finished small ablation ((a) alone, CoLA, one seed, BLiMP probes): its folder, inputs and README."""
    tmp = tmp_path_factory.mktemp("ablation-study")
    root = write_learnable_tasks(tmp / "data", n=24)
    shutil.copytree(tiny_blimp / "blimp", root / "blimp")
    model, corpus = copy_of(tiny_checkpoint, tmp / "model"), copy_of(tiny_corpus, tmp / "corpus.txt")
    out = tmp / "out"
    ablation.main(ablation_argv(model, corpus, root, out))
    return SimpleNamespace(tmp=tmp, root=root, model=model, corpus=corpus, out=out,
                           readme=(out / "README.md").read_text())


def test_ablation_refuses_to_continue_after_the_corpus_was_edited(ablation_study, monkeypatch):
    """Editing the corpus in place reran nothing: its content is now compared, before any stage."""
    stages_forbidden(monkeypatch)
    s = ablation_study
    text = s.corpus.read_text()
    s.corpus.write_text(text + "\nthe red cat saw a dog near the hill .\n")
    try:
        with pytest.raises(SystemExit, match=refusal(s.out, "an ablation", "inputs corpus")):
            ablation.main(ablation_argv(s.model, s.corpus, s.root, s.out))
    finally:
        s.corpus.write_text(text)
    assert (s.out / "README.md").read_text() == s.readme


def test_ablation_refuses_to_continue_after_the_start_model_changed(ablation_study, monkeypatch):
    stages_forbidden(monkeypatch)
    s = ablation_study
    weights = (s.model / "model.safetensors").read_bytes()
    nudged(s.model, s.tmp / "nudged")
    shutil.copy(s.tmp / "nudged" / "model.safetensors", s.model / "model.safetensors")
    try:
        with pytest.raises(SystemExit, match=refusal(s.out, "an ablation", "inputs model")):
            ablation.main(ablation_argv(s.model, s.corpus, s.root, s.out))
    finally:
        (s.model / "model.safetensors").write_bytes(weights)


@pytest.mark.parametrize("edit, where, what, differs", [
    ("glue/CoLA/dev.tsv", "finetune/start/CoLA", "the fine-tuning of start on CoLA", "inputs data"),
    ("blimp/word_order.jsonl", "", "an ablation", "inputs blimp"),  # the ablation's own record
], ids=["task-files", "blimp-files"])
def test_ablation_under_another_data_root_refuses_what_its_files_change(ablation_study, edit, where, what,
                                                                         differs, tmp_path, monkeypatch):
    """Another --data-root (not in the settings) reran nothing: the task and BLiMP files it holds are
    compared (the task files by each fine-tuning stage, so that tasks may be added)."""
    stages_forbidden(monkeypatch)
    s = ablation_study
    root = copy_of(s.root, tmp_path / "data")
    lines = (root / edit).read_text().splitlines(keepends=True)
    (root / edit).write_text("".join(lines[1:] + lines[:1]))  # the same rows, another order
    with pytest.raises(SystemExit, match=refusal(s.out / where if where else s.out, what, differs)):
        ablation.main(ablation_argv(s.model, s.corpus, root, s.out))
    assert (s.out / "README.md").read_text() == s.readme


def test_ablation_reuses_every_stage_made_from_the_same_content(ablation_study, tmp_path, monkeypatch):
    """A copy of the data root elsewhere: nothing runs, each input hashed once in the command."""
    stages_forbidden(monkeypatch)
    hashed = fingerprints_counted(monkeypatch)
    s = ablation_study
    out, root = copy_of(s.out, tmp_path / "out"), copy_of(s.root, tmp_path / "data")
    text = ablation.main(ablation_argv(s.model, s.corpus, root, out))
    assert text.split("![")[0] == s.readme.split("![")[0]
    assert len(hashed) == len(set(hashed))


@pytest.mark.parametrize("edit, stage, what, differs", [
    ("corpus", "pretrain/random", "the pretraining stage 'random'", "inputs corpus"),
    ("blimp/noun_number.jsonl", "probe/start-0000000", "the probe of start at step 0", "inputs blimp"),
], ids=["pretraining-corpus", "probe-blimp"])
def test_an_ablation_stage_copied_elsewhere_is_reused_only_if_made_from_the_same_inputs(
        ablation_study, edit, stage, what, differs, tmp_path, monkeypatch):
    """Each stage checks its own record too: stages copied into a new --out (to fine-tune the same
    checkpoints with other seeds, say) are refused when what they were made from differs."""
    stages_forbidden(monkeypatch)
    s = ablation_study
    out, root = tmp_path / "out", copy_of(s.root, tmp_path / "data")
    for kind in ("pretrain", "probe"):
        shutil.copytree(s.out / kind, out / kind)
    path = s.corpus if edit == "corpus" else root / edit
    text = path.read_text()
    path.write_text(text.replace("the", "a", 1))
    try:
        with pytest.raises(SystemExit, match=refusal(out / stage, what, differs)):
            ablation.main(ablation_argv(s.model, s.corpus, root, out, "--seeds", "2"))
    finally:
        path.write_text(text)


def test_an_ablation_of_an_earlier_version_is_refused(tmp_path, tiny_checkpoint, tiny_corpus):
    """Its stages recorded nothing of what they were made from: they cannot be checked, so not reused."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "settings.json").write_text("{}")
    args = ablation.parse_args(ablation_argv(tiny_checkpoint, tiny_corpus, tmp_path, out))
    with pytest.raises(SystemExit, match="holds an ablation of an earlier version, which did not record"):
        ablation.check_settings(args)


# ----------------------------------------------------------------- 3. files checked (run folder)


def test_a_stateful_masking_function_is_refused(tmp_path, tiny_checkpoint, tiny_corpus):
    """Module-level state broke the bit-exact resume without a word."""
    rule = tmp_path / "counter.py"
    rule.write_text("calls = [0]\n\ndef rule(batch):\n    calls[0] += 1\n"
                    "    return batch.maskable & (batch.input_ids % 3 == calls[0] % 3)\n")
    with pytest.raises(SystemExit, match=r"counter.py:rule: asked twice about the same batch with the same "
                                         r"generator, it selected different tokens; a rule must be a pure"):
        train.main(argv(tiny_checkpoint, tiny_corpus, tmp_path / "run", "--masking-fn", f"{rule}:rule"))


# ----------------------------------------------------------------- 3. files checked against what they claim
# (finetune.py's prompts and teachers, glue.py's task files and submissions, probe.py's model)


def write_prompt_tasks(root, n=12):
    """Tiny CoLA, CB, COPA and WSC files (every split alike) in the tiny vocabulary."""
    cola = [f"src\t{i % 2}\t\tthe {['dog', 'cat'][i % 2]} sat near the hill ." for i in range(n)]
    labels, animals = ("entailment", "contradiction", "neutral"), ("cat", "dog", "king")
    rows = {"CB": [{"premise": f"the {animals[i % 3]} saw a bird .", "label": labels[i % 3], "idx": i,
                    "hypothesis": f"a {animals[i % 3]} saw a bird ."} for i in range(n)],
            "COPA": [{"premise": "a cat sat .", "choice1": "the cat ran .", "choice2": "the dog ran .",
                      "question": "cause", "label": i % 2, "idx": i} for i in range(n)],
            "WSC": [{"text": "the cat saw a bird . it ran .", "idx": i, "label": i % 2 == 0,
                     "target": {"span1_index": 1, "span1_text": "cat", "span2_index": 6, "span2_text": "it"}}
                    for i in range(n)]}
    (root / "glue" / "CoLA").mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        (root / "glue" / "CoLA" / f"{split}.tsv").write_text("\n".join(cola) + "\n")
    for name, task_rows in rows.items():
        (root / "superglue" / name).mkdir(parents=True, exist_ok=True)
        for split in ("train", "val", "test"):
            (root / "superglue" / name / f"{split}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in task_rows))
    return root


def tune(model, root, task, *extra):
    """finetune.py, prompt tuning for one short epoch on the tiny tasks."""
    return finetune.main(["--model", str(model), "--task", task, "--data-root", str(root),
                          "--tuning", "prompt", "--seeds", "1", "--epochs", "1", "--batch-size", "8",
                          "--lr", "3e-2", "--prompt-length", "4", "--device", "cpu", "--quiet", *extra])


@pytest.fixture(scope="module")
def prompts(tmp_path_factory, tiny_checkpoint):
    """Prompts tuned on the tiny tasks: CoLA's from a random start (the source), CB's own of seeds 1
    and 2, CB's teachers (CoLA's prompt tuned on CB), and CoLA's on another model (a weight moved)."""
    work = tmp_path_factory.mktemp("prompts")
    root = write_prompt_tasks(work / "data")
    other = work / "other-model"
    shutil.copytree(tiny_checkpoint, other)
    weights = load_file(other / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + 0.01
    save_file(weights, str(other / "model.safetensors"))
    p = SimpleNamespace(work=work, root=root, model=tiny_checkpoint, source=work / "source" / "CoLA",
                        own=work / "own" / "CB", teachers=work / "teachers" / "CB",
                        other=work / "other" / "CoLA")
    tune(tiny_checkpoint, root, "CoLA", "--save", str(work / "source"))
    tune(tiny_checkpoint, root, "CB", "--seeds", "1", "2", "--save", str(work / "own"))
    tune(tiny_checkpoint, root, "CB", "--prompt-init", str(p.source), "--save", str(work / "teachers"))
    tune(other, root, "CoLA", "--save", str(work / "other"))
    return p


def edited(folder, to, tensors=None, inputs=None, settings=None):
    """A copy of a saved prompt's folder (`to`), some tensors or some of its record's inputs or settings
    replaced in each of its prompts (the best seed's and every seed's)."""
    shutil.copytree(folder, to)
    for path in to.rglob("prompt.safetensors"):
        save_file({**load_file(path), **(tensors or {})}, str(path))
    for path in to.rglob("provenance.json"):
        record = json.loads(path.read_text())
        record["inputs"].update(inputs or {})
        record["settings"].update(settings or {})
        path.write_text(json.dumps(record))
    return to


def stops(p, *options):
    """The message finetune.py stops with on CB with these prompt options."""
    with pytest.raises(SystemExit) as info:
        tune(p.model, p.root, "CB", *options)
    return str(info.value)


def panda(p, teachers, source=None, target=None):
    """The options of a PANDA run on CB from these teachers."""
    return ["--distill-from", str(source or p.source), "--target-prompt", str(target or p.own / "seed-1"),
            "--teachers", str(teachers)]


def test_a_teacher_of_another_shape_is_refused_not_broadcast(prompts, tmp_path, monkeypatch):
    """A 1-output head (COPA's) filled CB's 3 logits with one number; a prompt of length 1 filled 4 slots."""
    monkeypatch.setattr(finetune, "finetune_seed", None)  # refused before any training
    copa_head = {"head.out.weight": torch.zeros(1, 32), "head.out.bias": torch.zeros(1)}
    teachers = edited(prompts.teachers, tmp_path / "one-output" / "CB", copa_head)
    assert stops(prompts, *panda(prompts, teachers)) == (
        f"error: {teachers / 'seed-1' / 'prompt.safetensors'}: tensor 'head.out.weight' has shape (1, 32); "
        "a teacher of CB on this model with --prompt-length 4 needs (3, 32)")
    teachers = edited(prompts.teachers, tmp_path / "length-1" / "CB", {"prompt": torch.zeros(2, 2, 1, 32)})
    assert stops(prompts, *panda(prompts, teachers)) == (
        f"error: {teachers / 'seed-1' / 'prompt.safetensors'}: tensor 'prompt' has shape (2, 2, 1, 32); "
        "a teacher of CB on this model with --prompt-length 4 needs (2, 2, 4, 32)")
    with pytest.raises(checkpoint.PromptError, match=r"the teacher's head.out.weight: shape \(1, 32\), "
                                                   r"where this model needs \(3, 32\)"):
        checkpoint.copy_exact(torch.zeros(3, 32), torch.zeros(1, 32), "the teacher's head.out.weight")


def test_a_prompt_tuned_on_another_model_is_refused(prompts, monkeypatch):
    monkeypatch.setattr(finetune, "finetune_seed", None)
    for option in ("--prompt-init", "--distill-from"):
        said = stops(prompts, option, str(prompts.other))
        assert said == (f"error: {prompts.other / 'provenance.json'}: the {option} prompt was tuned on other "
                        "inputs or settings than this run needs: inputs model (a prompt means something only "
                        "to the model it was tuned on)")


def test_a_target_prompt_of_another_task_or_seed_is_refused(prompts, monkeypatch):
    monkeypatch.setattr(finetune, "finetune_seed", None)
    source = ["--distill-from", str(prompts.source)]
    said = stops(prompts, *source, "--target-prompt", str(prompts.source))
    assert said == (f"error: {prompts.source / 'provenance.json'}: the --target-prompt was tuned on other "
                    'inputs or settings than this run needs: settings task: "CoLA" there, "CB" now')
    said = stops(prompts, *source, "--target-prompt", str(prompts.own / "seed-2"))
    assert said == (f"error: {prompts.own / 'seed-2' / 'provenance.json'}: the --target-prompt was tuned on "
                    "other inputs or settings than this run needs: settings seed: 2 there, 1 now (both prompts "
                    "of the transferability start alike: from the source's seed)")


def test_teachers_of_another_model_task_or_start_are_refused(prompts, tmp_path, monkeypatch):
    monkeypatch.setattr(finetune, "finetune_seed", None)
    own = prompts.own / "seed-1"
    needs = "the teacher of seed 1 was tuned on other inputs or settings than this run needs"
    assert stops(prompts, *panda(prompts, prompts.teachers, source=own)) == (
        f"error: {prompts.teachers / 'seed-1' / 'provenance.json'}: {needs}: inputs start (PANDA's teacher "
        "is the source prompt tuned further on the target)")
    teachers = edited(prompts.teachers, tmp_path / "other" / "CB", inputs={"model": "0" * 64})
    assert stops(prompts, *panda(prompts, teachers)) == (
        f"error: {teachers / 'seed-1' / 'provenance.json'}: {needs}: inputs model (a prompt means something "
        "only to the model it was tuned on)")
    teachers = edited(prompts.teachers, tmp_path / "copa" / "CB", settings={"task": "COPA"})
    assert stops(prompts, *panda(prompts, teachers)) == (
        f"error: {teachers / 'seed-1' / 'provenance.json'}: {needs}: settings task: \"COPA\" there, \"CB\" now")


def test_a_prompt_record_without_seed_or_not_json_is_refused_naming_the_file(prompts, tmp_path, monkeypatch):
    monkeypatch.setattr(finetune, "finetune_seed", None)
    no_seed = edited(prompts.source, tmp_path / "no-seed")
    record = json.loads((no_seed / "provenance.json").read_text())
    del record["settings"]["seed"]
    (no_seed / "provenance.json").write_text(json.dumps(record))
    assert stops(prompts, "--distill-from", str(no_seed)) == (
        f"error: {no_seed / 'provenance.json'}: no seed: what the prompt was tuned on is not recorded "
        "(tune it again with this finetune.py's --save)")
    broken = edited(prompts.source, tmp_path / "broken")
    (broken / "provenance.json").write_text('{"settings": {"task": "CoLA",')
    said = stops(prompts, "--prompt-init", str(broken))
    assert said == (f"error: {broken / 'provenance.json'}: cannot be read (JSONDecodeError); it records what "
                    "broken was made from")


def test_prompt_tuning_a_model_without_layers_is_refused(tmp_path, tiny_checkpoint, capsys):
    folder = tmp_path / "no-layers"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 0}))
    said = refused(finetune.parse_args, ["--model", str(folder), "--task", "CB", "--tuning", "prompt"],
                   capsys)
    assert said.endswith(f"error: --tuning prompt: --model {folder} has 0 layers, so its prompt (vectors in "
                         "front of each layer's attention) would be empty and only the head would learn")


def headless(tiny_checkpoint, tmp_path):
    """The tiny checkpoint without its MLM head (as the raw MiniLM comes)."""
    folder = tmp_path / "headless"
    shutil.copytree(tiny_checkpoint, folder)
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("cls.")},
              str(folder / "model.safetensors"))
    return folder


def test_probing_a_model_without_a_trained_mlm_head_is_refused_unless_asked(tmp_path, tiny_checkpoint,
                                                                              tiny_blimp, capsys):
    """The raw MiniLM's BLiMP score came from a random head: 58.3% on one run, 83.3% on the next."""
    folder = headless(tiny_checkpoint, tmp_path)
    options = ["--blimp", "--data-root", str(tiny_blimp), "--pairs-per-paradigm", "2", "--device", "cpu",
               "--quiet"]
    for task in (options, ["the cat [MASK] near the hill ."]):
        with pytest.raises(SystemExit, match=rf"error: --model {folder} has no trained MLM head "
                                             r"\(decoder, dense, norm would be drawn at random\)"):
            probe.main(["--model", str(folder), *task])
    out = tmp_path / "probe.json"
    results = probe.main(["--model", str(folder), "--fresh-head-ok", "--json", str(out), *options])
    printed = capsys.readouterr().out
    assert "note: the MLM head (decoder, dense, norm) was drawn at random (--fresh-head-ok)" in printed
    assert "s) [random MLM head]" in printed
    assert results["fresh_head"] is True and json.loads(out.read_text())["fresh_head"] is True
    assert probe.main(["--model", str(tiny_checkpoint), *options])["fresh_head"] is False


def test_submissions_are_typed_as_the_reference_writers_type_them():
    """COPA's labels were written "1", WSC's "true"; jiant's SuperGLUE writers write 1, and "True"."""
    two = [glue.Example("a", None, None, "0"), glue.Example("b", None, None, "1")]
    assert glue.submission_rows("COPA", two, [1, 0]) == (
        "COPA.jsonl", '{"idx": 0, "label": 1}\n{"idx": 1, "label": 0}\n')
    assert glue.submission_rows("WSC", two, [1, 0]) == (
        "WSC.jsonl", '{"idx": 0, "label": "True"}\n{"idx": 1, "label": "False"}\n')
    assert glue.submission_rows("WiC", two, [1, 0])[1] == (
        '{"idx": 0, "label": "true"}\n{"idx": 1, "label": "false"}\n')


def test_duplicate_test_rows_are_refused_as_the_file_is_read(tmp_path):
    row = {"premise": "P.", "hypothesis": "h", "idx": 3}
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (row, dict(row, idx=4), row)))
    with pytest.raises(glue.FormatError, match=r"test.jsonl:3: idx 3 again \(first on line 1\); "
                                               r"a submission names each test row once"):
        glue.read_examples("CB", tmp_path, "test")
    (tmp_path / "test.tsv").write_text("index\tsentence\n0\tthe cat sat .\n0\tthe dog sat .\n")
    with pytest.raises(glue.FormatError, match=r"test.tsv:3: idx 0 again \(first on line 2\)"):
        glue.read_examples("CoLA", tmp_path, "test")


def test_a_blimp_paradigm_with_fewer_pairs_than_asked_is_reported(tmp_path, tiny_checkpoint, tiny_blimp,
                                                                   capsys):
    out = tmp_path / "blimp.json"
    probe.main(["--model", str(tiny_checkpoint), "--blimp", "--data-root", str(tiny_blimp),
                "--pairs-per-paradigm", "3", "--device", "cpu", "--quiet", "--json", str(out)])
    assert ("note: 1 of the 2 paradigms hold fewer than the 3 pairs asked, and are scored on all they have: "
            "word_order (2)") in capsys.readouterr().out
    report = json.loads(out.read_text())["blimp"]
    assert report["short_paradigms"] == {"word_order": 2} and report["pairs_per_paradigm"] == 3
    assert report["pairs"] == 5


def wsc_row(text, **target):
    spans = {"span1_index": 1, "span1_text": "cat", "span2_index": 3, "span2_text": "it"}
    return {"text": text, "idx": 0, "label": True, "target": {**spans, **target}}


def test_an_out_of_range_wsc_span_index_is_refused_not_repaired(tmp_path):
    """span1_index 9 in a text of 6 words was moved to the nearest "cat" without a word."""
    (tmp_path / "train.jsonl").write_text(json.dumps(wsc_row("the cat saw it ran .", span1_index=9)) + "\n")
    with pytest.raises(glue.FormatError, match=r"train.jsonl:1: span1_index 9 is out of range: "
                                               r"the text has 6 words \(0 to 5\)"):
        glue.read_examples("WSC", tmp_path, "train")


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


def test_a_truncated_hardest_token_file_is_named_on_resume(tmp_path, tiny_checkpoint, tiny_corpus):
    out = tmp_path / "run"
    train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "2", "--masking", "informative"))
    path = out / "hardest-heldout.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SystemExit, match=r"hardest-heldout.pt: cannot be read .* Start a new run, or delete it"):
        train.main(argv(tiny_checkpoint, tiny_corpus, out, "--steps", "4", "--resume"))


def test_ctrl_c_in_the_offline_pass_stops_between_batches(tmp_path, tiny_checkpoint, tiny_corpus, monkeypatch):
    """Ctrl-C waited for the whole pass over the corpus."""
    calls = []
    real = se.question

    def then_ctrl_c(model, ids, positions=None, precision="fp32"):
        calls.append(positions)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(model, ids, positions, precision)
    monkeypatch.setattr(se, "question", then_ctrl_c)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        train.main(argv(tiny_checkpoint, tiny_corpus, out, "--questioning", "offline", "--heldout", "0",
                        "--micro-batch-size", "4"))
    assert stopped.value.code == 130
    assert len([p for p in calls if p is None]) == 2  # the pass asked two batches of its 34, then stopped
    assert not list(out.glob("scores-step*")) and (out / "latest").is_file()


# ----------------------------------------------------------------- 4. crashes that name nothing
# (finetune.py, glue.py, probe.py)


def test_a_wsc_target_that_is_not_an_object_or_a_span_past_the_text_is_named(tmp_path):
    past = wsc_row("the big cat", span1_index=2, span1_text="cat sat", span2_index=0, span2_text="the")
    for row, message in [
            ({**wsc_row("the cat saw it ."), "target": "cat"},
             'target is "cat", expected an object with span1_index, span1_text, span2_index, span2_text'),
            (past, "span1_text 'cat sat' (2 words from word 2) runs past the end of the text (3 words)")]:
        (tmp_path / "train.jsonl").write_text(json.dumps(row) + "\n")
        with pytest.raises(glue.FormatError) as info:
            glue.read_examples("WSC", tmp_path, "train")
        assert str(info.value) == f"{tmp_path / 'train.jsonl'}:1: {message}"


def test_a_non_integer_test_idx_stops_the_run_before_training(tmp_path, tiny_checkpoint, monkeypatch):
    """It failed in the submission writer, after all the training (of every task before it, too)."""
    root = write_prompt_tasks(tmp_path / "data")
    test = root / "superglue" / "COPA" / "test.jsonl"
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    rows[2]["idx"] = "two"
    test.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(finetune, "finetune_seed", None)
    with pytest.raises(SystemExit) as info:
        finetune.main(["--model", str(tiny_checkpoint), "--task", "CB", "COPA", "--data-root", str(root),
                       "--predict", str(tmp_path / "predictions"), "--device", "cpu", "--quiet"])
    assert str(info.value) == (f"error: {test}:3: idx 'two' is not a whole number; a submission names each "
                               "test row by it")


def test_a_prompt_file_that_is_corrupt_or_has_no_prompt_is_named(prompts, tmp_path, monkeypatch):
    monkeypatch.setattr(finetune, "finetune_seed", None)
    corrupt = edited(prompts.source, tmp_path / "corrupt")
    (corrupt / "prompt.safetensors").write_bytes((corrupt / "prompt.safetensors").read_bytes()[:100])
    said = stops(prompts, "--prompt-init", str(corrupt))
    assert said.startswith(f"error: {corrupt / 'prompt.safetensors'}: cannot read the weights (truncated or "
                           "corrupt file?)") and "\n" not in said
    no_prompt = edited(prompts.source, tmp_path / "no-prompt")
    save_file({"head.out.bias": torch.zeros(2)}, str(no_prompt / "prompt.safetensors"))
    assert stops(prompts, "--prompt-init", str(no_prompt)) == (
        f"error: {no_prompt / 'prompt.safetensors'}: no tensor 'prompt' (it holds head.out.bias)")


def test_a_blimp_pair_or_a_text_longer_than_the_positions_is_refused(tmp_path, tiny_checkpoint, blimp_files):
    """Both were IndexError: index out of range in self."""
    long = " ".join(["the cat sat near the hill ."] * 10)  # 70 tokens, and 2 special ones; the model has 64
    pairs = [("the dog ran .", "dog the ran ."), (long, long + " .")]
    root = blimp_files(tmp_path, {"short": ("syntax", [("the cat sat .", "cat the sat .")]),
                                  "long": ("syntax", pairs)})
    with pytest.raises(SystemExit) as info:
        probe.main(["--model", str(tiny_checkpoint), "--blimp", "--data-root", str(root), "--device", "cpu"])
    assert str(info.value) == ("error: BLiMP paradigm long, pair 2 (grammatical sentence) is 72 tokens, more "
                               f"than the model's 64 positions: {long[:60] + '...'!r}")
    with pytest.raises(SystemExit) as info:
        probe.main(["--model", str(tiny_checkpoint), "--device", "cpu", long + " [MASK] ."])
    assert str(info.value) == f"error: {long[:60] + '...'!r}: 74 tokens, more than the model's 64 positions"


def test_the_rule_preset_without_the_demo_says_to_run_it_first(tmp_path, monkeypatch, capsys):
    """The exercises' fast loop starts from the demo's head-trained checkpoint; without it, one line says so."""
    monkeypatch.chdir(tmp_path)  # no runs/demo here
    assert refused(train.parse_args, ["--preset", "rule"], capsys) == (  # prog: pytest's
        "__main__.py: error: runs/demo/step-0000100: no such checkpoint; the rule preset starts from the demo's "
        "model as its head was trained: run `make demo` first")
    (tmp_path / "runs" / "demo" / "step-0000100").mkdir(parents=True)
    rule = tmp_path / "rule.py"
    rule.write_text("def rule(batch):\n    return batch.maskable\n")
    args, method = train.parse_args(["--preset", "rule", "--masking-fn", f"{rule}:rule"])
    assert (args.model, args.head_steps, args.steps) == ("runs/demo/step-0000100", 0, 15)
    assert train.PRESETS["demo"]["keep_every"] == train.PRESETS["demo"]["head_steps"]  # the demo keeps it
