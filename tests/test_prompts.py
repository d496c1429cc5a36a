"""Prompt tuning, prompt transfer and PANDA's distillation (finetune.py, model.Prompt); COPA and WSC
(glue.py)."""

import json

import numpy as np
import pytest
import torch

import checkpoint
import finetune as ft
import glue
import runtime
from data import DEFAULT_DATA_ROOT
from model import Encoder, MaskedLM

DATA = DEFAULT_DATA_ROOT


def write_tasks(root, n=48):
    """Tiny tasks the tiny vocabulary can learn: CoLA's layout (is the animal a cat?), COPA's (the
    choice that names a cat), WSC's (does the pronoun follow a noun that is a cat?)."""
    rng = np.random.default_rng(0)
    cola, copa, wsc, wnli = [], [], [], ["index\tsentence1\tsentence2\tlabel"]
    for i in range(n):
        animal, other = rng.permutation(["cat", "dog"])
        colour = rng.choice(["red", "old", "big"])
        cola.append(f"src\t{int(animal == 'cat')}\t\tthe {colour} {animal} sat near the hill .")
        right = int(rng.integers(2))
        choices = ["the dog ran .", "the dog ran ."]
        choices[right] = "the cat ran ."
        copa.append({"premise": f"a {animal} sat .", "choice1": choices[0], "choice2": choices[1],
                     "question": ["cause", "effect"][i % 2], "label": right, "idx": i})
        wsc.append({"text": f"the {animal} saw a bird . it ran .", "idx": i, "label": animal == "cat",
                    "target": {"span1_index": 1, "span1_text": animal, "span2_index": 6, "span2_text": "it"}})
        wnli.append(f"{i}\tthe {animal} saw a bird .\tthe {animal} saw it .\t{int(animal == 'cat')}")
    for split in ("train", "dev"):
        (root / "glue" / "CoLA").mkdir(parents=True, exist_ok=True)
        (root / "glue" / "CoLA" / f"{split}.tsv").write_text("\n".join(cola) + "\n")
        (root / "glue" / "WNLI").mkdir(parents=True, exist_ok=True)
        (root / "glue" / "WNLI" / f"{split}.tsv").write_text("\n".join(wnli) + "\n")
        for name, rows in (("COPA", copa), ("WSC", wsc)):
            (root / "superglue" / name).mkdir(parents=True, exist_ok=True)
            path = root / "superglue" / name / f"{'val' if split == 'dev' else split}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def prompt_run(tiny_checkpoint, root, task, *extra):
    return ft.main(["--model", str(tiny_checkpoint), "--task", task, "--data-root", str(root),
                    "--tuning", "prompt", "--seeds", "1", "2", "--epochs", "4", "--batch-size", "8",
                    "--lr", "3e-2", "--prompt-length", "4", "--device", "cpu", "--quiet", *extra])[0]


# ----------------------------------------------------------------- the prefix in the encoder


def test_without_a_prefix_the_encoder_is_todays(tiny_checkpoint):
    encoder = Encoder.from_pretrained(tiny_checkpoint)
    ids, mask = torch.tensor([[2, 10, 11, 12, 3, 0]]), torch.tensor([[1, 1, 1, 1, 1, 0]])
    empty = torch.zeros(encoder.config.num_hidden_layers, 2, 0, encoder.config.hidden_size)
    with torch.no_grad():
        assert torch.equal(encoder(ids, mask), encoder(ids, mask, prefix=empty))


def test_a_prefix_is_keys_and_values_in_front_of_the_sequences(tiny_checkpoint):
    """One layer by hand: the prefix's keys and values appended to the projected ones, attended to always."""
    encoder = Encoder.from_pretrained(tiny_checkpoint)
    layer, c = encoder.layers[0], encoder.config
    x = torch.randn(2, 5, c.hidden_size)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()
    prefix = torch.randn(2, 3, c.hidden_size)  # (keys/values, P, hidden)
    heads, d = c.num_attention_heads, c.hidden_size // c.num_attention_heads
    split = lambda t: t.view(t.shape[0], -1, heads, d).transpose(1, 2)
    with torch.no_grad():
        q = split(layer.q(x))
        k = split(torch.cat([prefix[0].expand(2, -1, -1), layer.k(x)], 1))
        v = split(torch.cat([prefix[1].expand(2, -1, -1), layer.v(x)], 1))
        allowed = torch.cat([torch.ones(2, 3, dtype=torch.bool), mask], 1)[:, None, None, :]
        weights = (q @ k.transpose(-1, -2) / d ** 0.5).masked_fill(~allowed, float("-inf")).softmax(-1)
        a = (weights @ v).transpose(1, 2).reshape(2, 5, c.hidden_size)
        h = layer.attn_norm(x + layer.attn_out(a))
        expected = layer.ff_norm(h + layer.ff_out(layer.act(layer.ff_in(h))))
        got = layer(x, mask[:, None, None, :], prefix)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- prompt tuning


def test_prompt_tuning_trains_only_the_prompt_and_the_head(tmp_path, tiny_checkpoint, monkeypatch):
    root, models = write_tasks(tmp_path), []
    real = ft.classifier
    monkeypatch.setattr(ft, "classifier", lambda *a: models.append(real(*a)) or models[-1])
    report = prompt_run(tiny_checkpoint, root, "CoLA", "--save", str(tmp_path / "prompts"))
    untouched = Encoder.from_pretrained(tiny_checkpoint).state_dict()
    for model in models:
        assert all(torch.equal(v, untouched[k]) for k, v in model.encoder.state_dict().items())
    c = MaskedLM.from_pretrained(tiny_checkpoint).config
    head = c.hidden_size * c.hidden_size + c.hidden_size + c.hidden_size * 2 + 2
    assert (report["trainable_parameters"] == report["stored_parameters"]
            == c.num_hidden_layers * 2 * 4 * 32 + head)
    saved = checkpoint.load_tuned(tmp_path / "prompts" / "CoLA")
    assert saved["prompt"].shape == (c.num_hidden_layers, 2, 4, c.hidden_size)
    assert (tmp_path / "prompts" / "CoLA" / "seed-2" / "prompt.safetensors").is_file()


def test_a_prompt_tuned_model_learns_a_tiny_task(tmp_path):
    """MiniLM, frozen: the tiny model's random encoder gives a frozen head too little to read."""
    report = ft.main(["--model", "minilm", "--task", "CoLA", "--data-root", str(write_tasks(tmp_path)),
                      "--tuning", "prompt", "--seeds", "1", "--epochs", "2", "--batch-size", "8",
                      "--lr", "1e-2", "--prompt-length", "4", "--device", "cpu", "--quiet"])[0]
    assert report["mean"]["mcc"] > 0.5  # dev = train here: chance is 0


def test_prompt_transfer_starts_from_exactly_the_source_prompt(tmp_path, tiny_checkpoint, monkeypatch):
    root = write_tasks(tmp_path)
    prompt_run(tiny_checkpoint, root, "CoLA", "--save", str(tmp_path / "prompts"))
    source = checkpoint.load_tuned(tmp_path / "prompts" / "CoLA")["prompt"]
    first = []
    real = runtime.optimizer_step

    def before_the_first_step(optimizer, scaler, parameters, clip=1.0):
        parameters = list(parameters)
        if not first:
            first.append(parameters[0].detach().clone())  # the prompt comes first
        return real(optimizer, scaler, parameters, clip)

    monkeypatch.setattr(runtime, "optimizer_step", before_the_first_step)
    prompt_run(tiny_checkpoint, root, "WSC", "--prompt-init", str(tmp_path / "prompts" / "CoLA"))
    assert torch.equal(first[0], source)


def test_distillation_loss_and_lambda_by_hand():
    task = glue.TASKS["CB"]
    student, teacher = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    labels = torch.tensor([0])
    cross_entropy = -student.log_softmax(-1)[0, 0]
    mse = ((student - teacher) ** 2).mean()  # (1 + 1 + 1) / 3
    assert (ft.distillation_loss(student, teacher, labels, task, 0.5)
            == pytest.approx(float(cross_entropy + 0.5 * mse)))
    assert ft.distill_weight(0.3, 2.0) == pytest.approx(0.6) and ft.distill_weight(-0.2) == 0.0
    p = torch.randn(2, 2, 3, 4)
    assert ft.transferability(p, p) == pytest.approx(1.0) and ft.transferability(p, -p) == pytest.approx(-1.0)


def test_a_prompt_starts_from_a_draw_of_its_seed_alone(tiny_checkpoint):
    config = MaskedLM.from_pretrained(tiny_checkpoint).config
    torch.manual_seed(5)
    first = ft.Prompt(config, 4, seed=3).prefix
    torch.randn(7)  # the global generator moves on; the prompt's start does not
    assert torch.equal(first, ft.Prompt(config, 4, seed=3).prefix)
    assert torch.equal(first, ft.Prompt.start((config.num_hidden_layers, 2, 4, config.hidden_size), 3))
    assert not torch.equal(first, ft.Prompt(config, 4, seed=4).prefix)


def test_transferability_compares_what_tasks_taught_not_the_seeds(tmp_path, tiny_checkpoint):
    """Three tiny tasks tuned from the same seed's start: the prompts themselves all score a cosine near 1,
    what training changed in them does not; CoLA and WSC here share their rule (is the animal a cat?),
    COPA's asks another thing (which choice names the cat)."""
    root, tasks = write_tasks(tmp_path), ("CoLA", "WSC", "COPA")
    for task in tasks:
        prompt_run(tiny_checkpoint, root, task, "--seeds", "1", "--save", str(tmp_path / task))
    raw = {t: checkpoint.load_tuned(tmp_path / t / t)["prompt"] for t in tasks}
    change = {t: ft.saved_change(tmp_path / t / t)[0] for t in tasks}
    pairs = [("CoLA", "WSC"), ("CoLA", "COPA"), ("WSC", "COPA")]
    assert all(ft.transferability(raw[a], raw[b]) > 0.99 for a, b in pairs)  # the start decides the raw cosine
    same_rule, *other = [ft.transferability(change[a], change[b]) for a, b in pairs]
    assert max(other) < 0.5 and same_rule > max(other)
    prompt_run(tiny_checkpoint, root, "WSC", "--prompt-init", str(tmp_path / "CoLA" / "CoLA"),
               "--save", str(tmp_path / "transfer"))
    with pytest.raises(ValueError, match="provenance.json: a prompt started from .*CoLA; the transferability"):
        ft.saved_change(tmp_path / "transfer" / "WSC")


def test_distilled_prompt_transfer_end_to_end(tmp_path, tiny_checkpoint, capsys):
    root = write_tasks(tmp_path)
    prompt_run(tiny_checkpoint, root, "CoLA", "--save", str(tmp_path / "source"))
    prompt_run(tiny_checkpoint, root, "WSC", "--save", str(tmp_path / "target"))
    prompt_run(tiny_checkpoint, root, "WSC", "--prompt-init", str(tmp_path / "source" / "CoLA"),
               "--save", str(tmp_path / "teachers"))
    report = prompt_run(tiny_checkpoint, root, "WSC", "--distill-from", str(tmp_path / "source" / "CoLA"),
                        "--target-prompt", str(tmp_path / "target" / "WSC"),
                        "--teachers", str(tmp_path / "teachers" / "WSC"), "--distill-scale", "2")
    change, seeds = [], []
    for folder in (tmp_path / "source" / "CoLA", tmp_path / "target" / "WSC"):  # the best seed's, each
        seeds.append(json.loads((folder / "provenance.json").read_text())["settings"]["seed"])
        prompt = checkpoint.load_tuned(folder)["prompt"]
        change.append(prompt - ft.Prompt.start(prompt.shape, seeds[-1]))
    assert report["transferability"] == pytest.approx(ft.transferability(*change))
    assert report["lambda"] == pytest.approx(2 * max(0.0, report["transferability"]))
    assert "lambda = 2.0 x max(0, " in capsys.readouterr().out and len(report["runs"]) == 2
    # Without --target-prompt the target's own prompt is tuned here, from the source's start
    report = prompt_run(tiny_checkpoint, root, "WSC", "--distill-from", str(tmp_path / "source" / "CoLA"),
                        "--teachers", str(tmp_path / "teachers" / "WSC"))
    seed = seeds[0]
    own = checkpoint.load_tuned(tmp_path / "target" / "WSC" / f"seed-{seed}")["prompt"]  # that seed's, run alike
    own_change = own - ft.Prompt.start(own.shape, seed)
    assert report["transferability"] == pytest.approx(ft.transferability(change[0], own_change), abs=1e-6)
    assert f"its own prompt, for the transferability (seed {seed}, the source's" in capsys.readouterr().out


def test_prompt_options_need_prompt_tuning(tiny_checkpoint, capsys):
    for options, message in [(["--save", "x"], "--save is for prompt tuning: add --tuning prompt"),
                             (["--tuning", "prompt", "--prompt-init", "a", "--distill-from", "b"],
                              "--prompt-init and --distill-from"),
                             (["--tuning", "prompt", "--teachers", "a"],
                              "--target-prompt and --teachers go with")]:
        with pytest.raises(SystemExit):
            ft.parse_args(["--model", str(tiny_checkpoint), "--task", "CB", *options])
        assert message in capsys.readouterr().err


# ----------------------------------------------------------------- COPA and WSC


def test_copa_scores_each_choice_and_learns(tmp_path, tiny_checkpoint):
    root = write_tasks(tmp_path)
    (example,) = glue.read_examples("COPA", root / "superglue" / "COPA", "train")[:1]
    assert example.text_a == "a cat sat . What was the cause?" and len(example.choices) == 2
    report = ft.main(["--model", str(tiny_checkpoint), "--task", "COPA", "--data-root", str(root),
                      "--seeds", "1", "--epochs", "6", "--batch-size", "8", "--lr", "1e-2",
                      "--device", "cpu", "--quiet"])[0]
    assert report["mean"]["accuracy"] > 0.75  # chance is 0.5


def test_wsc_marks_the_noun_and_the_pronoun(tmp_path):
    root = write_tasks(tmp_path)
    example = glue.read_examples("WSC", root / "superglue" / "WSC", "train")[0]
    assert example.text_a == "the *cat* saw a bird . #it# ran ." and example.label == 1


def test_copa_and_wsc_rows_that_are_wrong_are_named(tmp_path):
    rows = {"COPA": [({"premise": "p", "choice1": "a", "question": "cause", "label": 0, "idx": 0},
                      "train.jsonl:1: missing field choice2"),
                     ({"premise": "p", "choice1": "a", "choice2": "b", "question": "why",
                       "label": 0, "idx": 0},
                      "train.jsonl:1: question 'why' is not one of cause, effect")],
            "WSC": [({"text": "the cat ran .", "idx": 0, "label": True,
                      "target": {"span1_index": 1, "span1_text": "cat",
                                 "span2_index": 2, "span2_text": "it"}},
                     "train.jsonl:1: span2_text 'it' is not in the text"),
                    ({"text": "the cat ran .", "idx": 0, "label": True, "target": {"span1_index": 1}},
                     "train.jsonl:1: target needs span1_index")]}
    for task, cases in rows.items():
        for row, message in cases:
            (tmp_path / "train.jsonl").write_text(json.dumps(row) + "\n")
            with pytest.raises(glue.FormatError, match=message):
                glue.read_examples(task, tmp_path, "train")


@pytest.mark.skipif(not (DATA / "superglue" / "WSC").is_dir(), reason=f"no SuperGLUE data in {DATA}")
def test_the_real_copa_and_wsc_files():
    copa = {s: glue.read_examples("COPA", None, s) for s in ("train", "dev")}
    wsc = {s: glue.read_examples("WSC", None, s) for s in ("train", "dev")}
    assert [len(copa[s]) for s in copa] == [400, 100] and [len(wsc[s]) for s in wsc] == [554, 104]
    assert all(e.text_a.count("*") >= 2 and e.text_a.count("#") >= 2 for s in wsc for e in wsc[s])
    assert np.mean([e.label for e in wsc["dev"]]) == pytest.approx(38 / 104)  # the majority, False: 63.5%
    assert copa["train"][0].choices == ("The sun was rising.", "The grass was cut.")


def test_transfer_end_to_end(tmp_path, tiny_checkpoint):
    """transfer.py on tiny tasks: every stage, the table, the matrix; a second run reuses every stage."""
    from experiments import transfer

    root = write_tasks(tmp_path / "data")
    argv = ["--model", str(tiny_checkpoint), "--targets", "WSC", "--sources", "WNLI", "CoLA",
            "--seeds", "1", "2", "--epochs", "2", "--full-epochs", "1", "--source-epochs", "1",
            "--prompt-length", "4", "--batch-size", "8",
            "--data-root", str(root), "--device", "cpu", "--out", str(tmp_path / "transfer"), "--quiet"]
    text = transfer.main(argv)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:5]] == ["| 1. full fine-tuning",
                                                     "| 2. prompt tuning, random prompt",
                                                     "| 3. prompt transfer",
                                                     "| 4. distilled prompt transfer (PANDA)"]
    assert rows[-1].startswith("| WSC | cos ") and rows[-1].count("gain") == 2  # from WNLI and from CoLA
    stored = json.loads((tmp_path / "transfer" / "results.json").read_text())["reports"]
    assert stored["prompt-WSC"]["stored_parameters"] < stored["full-WSC"]["stored_parameters"] / 10
    assert "lambda" in stored["panda-WNLI-WSC"]
    assert transfer.main(argv) == text  # every stage kept
