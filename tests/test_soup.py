"""experiments/soup.py, MCL's course soups as a command: two tiny ELECTRA runs from one start, averaged.

The uniform soup is the exact mean of the runs' tensors (both models), written as an ELECTRA checkpoint
that the project's scripts load; the greedy soup keeps what its rule keeps and records every score; runs
of another shape, an existing folder and a non-ELECTRA folder are refused with their message."""

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import electra
import train
from checkpoint import latest_checkpoint, read_record, resolve_checkpoint
from experiments import soup

sys.path.insert(0, str(Path(__file__).parent))
from test_electra_train import argv  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*the checkpoint has no discriminator head")
PARTS = ("discriminator", "generator")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_checkpoint, tiny_corpus):
    """Two runs from the tiny BERT, one ELECTRA alone, one with every course; and one with a wider G."""
    root = tmp_path_factory.mktemp("soup-runs")
    courses = ["--std-ratio", "0.15", "--itd-ratio", "0.15", "--correct-generator", "1",
               "--correct-discriminator", "1"]
    made = {}
    for name, extra in (("rtd", []), ("all", courses), ("wide", ["--generator-size", "0.5"])):
        train.main(argv(tiny_checkpoint, tiny_corpus, root / name, "--steps", "4", *extra))
        made[name] = root / name
    return made


def weights(folder):
    return {f"{part}/{k}": t for part in PARTS for k, t in load_file(folder / part / "model.safetensors").items()}


def test_the_uniform_soup_is_the_exact_mean_and_loads_everywhere(runs, tmp_path, capsys):
    out = soup.main([str(runs["rtd"]), str(runs["all"]), "--out", str(tmp_path / "soup"), "--device", "cpu"])
    a, b, mean = weights(latest_checkpoint(runs["rtd"])), weights(latest_checkpoint(runs["all"])), weights(out)
    assert mean.keys() == a.keys() and len(mean) > 40
    moved = 0
    for k in mean:  # by hand: (a + b) / 2 in float64, stored as float32
        torch.testing.assert_close(mean[k], ((a[k].double() + b[k].double()) / 2).float(), rtol=0, atol=0)
        moved += not torch.equal(a[k], b[k])
    assert moved > 20  # the two runs differ: the mean is not either of them
    assert resolve_checkpoint(out) == out / "discriminator"  # finetune.py --model reads its discriminator
    pair = electra.ElectraPretraining.from_pretrained(out)  # the shared embeddings tied again, equal
    assert pair.generator.encoder.embed is pair.discriminator.encoder.embed
    record = read_record(out)
    assert record["settings"]["soup"] == "uniform" and len(record["inputs"]["models"]) == 2
    assert "uniform soup of 2 of 2 models" in capsys.readouterr().out


def test_the_greedy_soup_records_its_rule(runs, tmp_path, capsys):
    out = soup.main([str(runs["rtd"]), str(runs["all"]), str(runs["rtd"]), "--out", str(tmp_path / "greedy"),
                     "--greedy", "--eval-blocks", "8", "--device", "cpu"])
    log = read_record(out)["settings"]["log"]
    own = [entry["score"] for entry in log]
    assert own == sorted(own, reverse=True)  # best first
    assert log[0]["kept"] and log[0]["soup"] == own[0]
    best = own[0]
    for entry in log[1:]:  # kept exactly when the soup's score does not drop
        assert entry["kept"] == (entry["soup"] >= best)
        best = max(best, entry["soup"]) if entry["kept"] else best
    kept = read_record(out)["settings"]["kept"]
    assert len(kept) == sum(entry["kept"] for entry in log)
    printed = capsys.readouterr().out
    assert "own F1" in printed and "greedy soup of" in printed
    json.dumps(log)  # the record is plain JSON


def test_runs_of_another_shape_are_refused_naming_the_tensor(runs, tmp_path):
    with pytest.raises(SystemExit, match=r"error: .*wide: generator\.\S+ has shape \(\d+(, \d+)*\), .*rtd's"):
        soup.main([str(runs["rtd"]), str(runs["wide"]), "--out", str(tmp_path / "soup"), "--device", "cpu"])
    assert not (tmp_path / "soup").exists()


@pytest.mark.parametrize("case, message", [
    ("exists", "exists; a soup is written to a new folder"),
    ("one", "a soup needs at least two models"),
    ("not electra", "not an ELECTRA checkpoint of train.py"),
])
def test_bad_input_is_refused(runs, tmp_path, tiny_checkpoint, capsys, case, message):
    out = tmp_path / "soup"
    models = {"exists": [runs["rtd"], runs["all"]], "one": [runs["rtd"]],
              "not electra": [runs["rtd"], tiny_checkpoint]}[case]
    if case == "exists":
        out.mkdir()
    with pytest.raises(SystemExit) as e:
        soup.main([*map(str, models), "--out", str(out), "--device", "cpu"])
    assert message in str(e.value) + capsys.readouterr().err
