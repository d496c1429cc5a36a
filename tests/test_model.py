"""model.py: exact parity with the reference implementation, loading, saving, bad input."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from checkpoint import DEFAULT_MODELS, resolve_checkpoint
from model import Encoder, EncoderConfig, MaskedLM, SequenceClassifier
from tokenizer import Tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "parity"
PARITY = [("bert-mlm-tiny", MaskedLM), ("roberta-mlm-tiny", MaskedLM), ("bert-cls-tiny", SequenceClassifier)]


def inputs(expected):
    return dict(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"],
                token_type_ids=expected.get("token_type_ids"))


@pytest.mark.parametrize("name,cls", PARITY)
def test_parity_with_reference(name, cls):
    expected = load_file(FIXTURES / name / "expected.safetensors")
    model = cls.from_pretrained(FIXTURES / name)
    assert not model.training
    with torch.no_grad():
        logits = model(**inputs(expected))
        hidden = model.encoder(**inputs(expected))
    real = expected["attention_mask"].bool()
    assert (hidden - expected["last_hidden_state"])[real].abs().max() < 1e-5
    if logits.dim() == 3:  # MLM: compare real positions only
        assert (logits - expected["logits"])[real].abs().max() < 1e-5
    else:
        assert (logits - expected["logits"]).abs().max() < 1e-5


def test_minilm_real_tokenizer_and_encoder():
    expected = load_file(FIXTURES / "minilm-real" / "expected.safetensors")
    sentences = json.loads((FIXTURES / "minilm-real" / "expected.json").read_text())["sentences"]
    batch = Tokenizer("minilm")(sentences)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(batch[key], expected[key]), key
    encoder = Encoder.from_pretrained("minilm")
    with torch.no_grad():
        hidden = encoder(**batch)
    real = expected["attention_mask"].bool()
    assert (hidden - expected["last_hidden_state"])[real].abs().max() < 1e-4


def test_minilm_gets_a_fresh_tied_mlm_head_and_says_so():
    with pytest.warns(UserWarning, match="no MLM head") as record:
        model = MaskedLM.from_pretrained("minilm")
    assert len([w for w in record if "MLM head" in str(w.message)]) == 1
    assert model.fresh_modules == ["decoder", "dense", "norm"]
    assert model.decoder.weight is model.encoder.embed.word.weight
    # the encoder itself is the real one
    reference = Encoder.from_pretrained("minilm")
    assert torch.equal(model.encoder.layers[3].ff_in.weight, reference.layers[3].ff_in.weight)


@pytest.mark.parametrize("name,cls", PARITY + [("bert-mlm-tiny", Encoder)])
def test_save_then_load_round_trip(tmp_path, name, cls):
    expected = load_file(FIXTURES / name / "expected.safetensors")
    model = cls.from_pretrained(FIXTURES / name)
    model.save_pretrained(tmp_path)
    again = cls.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(model(**inputs(expected)), again(**inputs(expected)))
    if cls is not Encoder:  # the same tensor names and shapes as the Hugging Face file we loaded
        ours = {k: v.shape for k, v in load_file(tmp_path / "model.safetensors").items()}
        theirs = {k: v.shape for k, v in load_file(FIXTURES / name / "model.safetensors").items()}
        assert ours == theirs
        config = json.loads((tmp_path / "config.json").read_text())
        assert config["architectures"] == [cls.architecture[config["model_type"]]]


def test_encoder_saves_the_base_model_layout(tmp_path):
    Encoder.from_pretrained(FIXTURES / "bert-mlm-tiny").save_pretrained(tmp_path)
    names = load_file(tmp_path / "model.safetensors").keys()
    assert ("embeddings.word_embeddings.weight" in names
            and not any(n.startswith(("bert.", "cls.")) for n in names))


@pytest.mark.parametrize("name", ["bert-mlm-tiny", "roberta-mlm-tiny"])
def test_projection_at_selected_positions_equals_full(name):
    expected = load_file(FIXTURES / name / "expected.safetensors")
    model = MaskedLM.from_pretrained(FIXTURES / name)
    g = torch.Generator().manual_seed(0)
    chosen = (torch.rand(expected["input_ids"].shape, generator=g) < 0.3) & expected["attention_mask"].bool()
    with torch.no_grad():
        full = model(**inputs(expected))
        by_mask = model(**inputs(expected), positions=chosen)
        by_index = model(**inputs(expected), positions=chosen.flatten().nonzero().squeeze(1))
    assert by_mask.shape == (int(chosen.sum()), model.config.vocab_size)
    torch.testing.assert_close(by_mask, full[chosen], rtol=0, atol=1e-6)
    assert torch.equal(by_mask, by_index)


def test_legacy_names_and_pytorch_bin(tmp_path):
    """Old BERT files: no bert. prefix, LayerNorm.gamma/beta, decoder stored, pickled .bin."""
    src = FIXTURES / "bert-mlm-tiny"
    weights = load_file(src / "model.safetensors")
    legacy = {k.removeprefix("bert.").replace("LayerNorm.weight", "LayerNorm.gamma")
               .replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in weights.items()}
    legacy["cls.predictions.decoder.weight"] = weights["bert.embeddings.word_embeddings.weight"]
    torch.save(legacy, tmp_path / "pytorch_model.bin")
    shutil.copy(src / "config.json", tmp_path)
    expected = load_file(src / "expected.safetensors")
    with torch.no_grad():
        a = MaskedLM.from_pretrained(src)(**inputs(expected))
        b = MaskedLM.from_pretrained(tmp_path)(**inputs(expected))
    assert torch.equal(a, b)


def test_classifier_from_an_encoder_checkpoint_starts_a_fresh_head():
    with pytest.warns(UserWarning, match="no classification head"):
        model = SequenceClassifier.from_pretrained(FIXTURES / "bert-mlm-tiny", num_labels=1)
    assert model.fresh_modules == ["dense", "out"]
    out = model(torch.tensor([[2, 5, 7, 3]]))
    assert out.shape == (1, 1)


def test_overrides_and_unknown_override():
    model = MaskedLM.from_pretrained(FIXTURES / "bert-mlm-tiny", hidden_dropout_prob=0.0)
    assert model.config.hidden_dropout_prob == 0.0
    with pytest.raises(TypeError, match="hiden_size"):
        MaskedLM.from_pretrained(FIXTURES / "bert-mlm-tiny", hiden_size=3)


# -- bad input: every error names the file and the problem ---------------------


def copy_fixture(tmp_path, name="bert-mlm-tiny"):
    dst = tmp_path / name
    shutil.copytree(FIXTURES / name, dst)
    return dst


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope") + ".*no such folder"):
        MaskedLM.from_pretrained(tmp_path / "nope")


def test_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        MaskedLM.from_pretrained(tmp_path)


def test_unsupported_model_type(tmp_path):
    folder = copy_fixture(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "gpt2"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config\.json.*unsupported model_type 'gpt2'.*bert, roberta"):
        MaskedLM.from_pretrained(folder)


def test_wrong_shape(tmp_path):
    folder = copy_fixture(tmp_path)
    weights = load_file(folder / "model.safetensors")
    weights["bert.encoder.layer.1.intermediate.dense.weight"] = torch.zeros(36, 32)
    save_file(weights, folder / "model.safetensors")
    wrong_shape = (r"model\.safetensors.*'encoder\.layer\.1\.intermediate\.dense\.weight' "
                   r"has shape \(36, 32\), the config expects \(37, 32\)")
    with pytest.raises(ValueError, match=wrong_shape):
        MaskedLM.from_pretrained(folder)


def test_truncated_weight_file(tmp_path):
    folder = copy_fixture(tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError,
                       match=r"model\.safetensors: cannot read the weights \(truncated or corrupt"):
        MaskedLM.from_pretrained(folder)


def test_truncated_pytorch_bin(tmp_path):
    folder = copy_fixture(tmp_path)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: cannot read the weights"):
        MaskedLM.from_pretrained(folder)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    folder = copy_fixture(tmp_path)
    weights = load_file(folder / "model.safetensors")
    del weights["bert.encoder.layer.0.attention.self.key.bias"]
    weights["bert.encoder.layer.0.attention.self.extra"] = torch.zeros(3)
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(ValueError) as err:
        MaskedLM.from_pretrained(folder)
    msg = str(err.value)
    assert "model.safetensors" in msg
    assert "missing weights: encoder.layer.0.attention.self.key.bias" in msg
    assert "unexpected weights: encoder.layer.0.attention.self.extra" in msg


def test_half_a_head_is_an_error_not_a_fresh_head(tmp_path):
    folder = copy_fixture(tmp_path)
    weights = load_file(folder / "model.safetensors")
    del weights["cls.predictions.transform.dense.bias"]
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(ValueError, match="missing weights: cls.predictions.transform.dense.bias"):
        MaskedLM.from_pretrained(folder)


def test_no_weight_file(tmp_path):
    folder = copy_fixture(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"no weights; expected one of model\.safetensors"):
        MaskedLM.from_pretrained(folder)


def test_hub_id_offline_says_how_to_pass_a_local_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not a local folder.*pass a local folder"):
        resolve_checkpoint("some-org/not-in-the-cache")


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="unsupported hidden_act 'swish'"):
        EncoderConfig(hidden_act="swish")


def test_short_names_resolve_to_installed_packages():
    for name in DEFAULT_MODELS:
        assert (resolve_checkpoint(name) / "config.json").is_file()


def test_usable_positions():
    assert EncoderConfig(max_position_embeddings=512).max_positions == 512
    roberta = EncoderConfig(model_type="roberta", max_position_embeddings=514, pad_token_id=1)
    assert roberta.max_positions == 512
