"""ELECTRA: the network (model.py) against the reference, and its pretraining step (electra.py)
against the paper: masking, sampling, labels, the loss, the shared embeddings, bad input."""

import argparse
import json
import math
import re
import shutil
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import electra
from masking import IGNORE_INDEX
from model import Discriminator, Encoder, EncoderConfig, MaskedLM, SequenceClassifier

FIXTURES = Path(__file__).parent / "fixtures"
BERT = FIXTURES / "parity" / "bert-mlm-tiny"
PARITY = [("electra-disc-tiny", Discriminator), ("electra-gen-tiny", MaskedLM),
          ("electra-cls-tiny", SequenceClassifier)]
HF_CLASS = {Discriminator: "ElectraForPreTraining", MaskedLM: "ElectraForMaskedLM",
            SequenceClassifier: "ElectraForSequenceClassification"}
# The ids of conftest's tiny vocabulary (101 entries): [PAD] [UNK] [CLS] [SEP] [MASK], then words.
TOK = types.SimpleNamespace(pad_id=0, cls_id=2, sep_id=3, mask_id=4, special_ids=[0, 1, 2, 3, 4],
                            vocab_size=101)
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def inputs(expected):
    return dict(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"],
                token_type_ids=expected["token_type_ids"])


def outputs(model, expected):
    with torch.no_grad():
        return model(**inputs(expected)), model.encoder(**inputs(expected))


def pair(**overrides):
    """The tiny discriminator (hidden 32, embeddings 16) and generator (hidden 8, embeddings 16), tied."""
    d = Discriminator.from_pretrained(FIXTURES / "electra-disc-tiny", **overrides)
    g = MaskedLM.from_pretrained(FIXTURES / "electra-gen-tiny", **overrides)
    return electra.ElectraPretraining(d, g)


def blocks(rows=4, length=24, seed=0):
    """Packed blocks as train.py makes them: [CLS] words ... [SEP], no padding."""
    ids = torch.randint(5, 101, (rows, length), generator=torch.Generator().manual_seed(seed))
    ids[:, 0], ids[:, -1] = TOK.cls_id, TOK.sep_id
    return ids


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- 1. the network: parity with transformers' ELECTRA, in both directions ---------------------------


@pytest.mark.parametrize("name,cls", PARITY)
def test_parity_with_reference(name, cls):
    expected = load_file(FIXTURES / name / "expected.safetensors")
    model = cls.from_pretrained(FIXTURES / name)
    assert not model.training and model.config.model_type == "electra"
    logits, hidden = outputs(model, expected)
    real = expected["attention_mask"].bool()
    assert (hidden - expected["last_hidden_state"])[real].abs().max() < 1e-5
    if logits.shape[:2] == real.shape:  # one output per token: compare real positions only
        assert (logits - expected["logits"])[real].abs().max() < 1e-5
    else:
        assert (logits - expected["logits"]).abs().max() < 1e-5


def test_the_fixtures_cover_both_widths_and_the_omitted_tied_weight():
    """What the parity tests rest on: E != H in the discriminator and the generator (each has its
    projection), and a generator file without generator_lm_head.weight (tied to the word embeddings)."""
    for name in ("electra-disc-tiny", "electra-gen-tiny"):
        config = EncoderConfig.from_json(FIXTURES / name / "config.json")
        assert config.embedding_size != config.hidden_size
        assert "electra.embeddings_project.weight" in load_file(FIXTURES / name / "model.safetensors")
    assert "generator_lm_head.weight" not in load_file(FIXTURES / "electra-gen-tiny" / "model.safetensors")
    g = MaskedLM.from_pretrained(FIXTURES / "electra-gen-tiny")
    assert g.decoder.weight is g.encoder.embed.word.weight and g.decoder.weight.shape == (101, 16)


@pytest.mark.parametrize("name,cls", PARITY)
def test_save_then_load_round_trip(tmp_path, name, cls):
    expected = load_file(FIXTURES / name / "expected.safetensors")
    model = cls.from_pretrained(FIXTURES / name)
    model.save_pretrained(tmp_path)
    again = cls.from_pretrained(tmp_path)
    for a, b in zip(outputs(model, expected), outputs(again, expected)):
        assert torch.equal(a, b)
    ours = {k: v.shape for k, v in load_file(tmp_path / "model.safetensors").items()}
    theirs = {k: v.shape for k, v in load_file(FIXTURES / name / "model.safetensors").items()}
    assert ours == theirs  # the Hugging Face names and shapes, the tied output weight left out
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == [HF_CLASS[cls]]
    assert (config["model_type"], config["embedding_size"], config["hidden_size"]) == ("electra", 16, ours[
        "electra.embeddings_project.weight"][0])


@pytest.mark.parametrize("name,cls", PARITY)
def test_transformers_loads_what_we_write_with_the_same_outputs(tmp_path, name, cls):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed: the check "
                                                              "that it loads what we write is skipped")
    expected = load_file(FIXTURES / name / "expected.safetensors")
    model = cls.from_pretrained(FIXTURES / name)
    with torch.no_grad():  # change every weight, so that the check is of our file, not of the fixture's
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen(1)))
    model.save_pretrained(tmp_path)
    theirs = getattr(transformers, HF_CLASS[cls]).from_pretrained(tmp_path).eval()
    logits, hidden = outputs(model, expected)
    with torch.no_grad():
        reference = theirs(**inputs(expected), output_hidden_states=True)
    real = expected["attention_mask"].bool()
    assert (reference.hidden_states[-1] - hidden)[real].abs().max() < 1e-5
    differ = reference.logits - logits
    assert (differ[real] if logits.shape[:2] == real.shape else differ).abs().max() < 1e-5


def test_a_generator_file_that_stores_the_tied_weight_loads(tmp_path):
    """Older generator files keep generator_lm_head.weight, a copy of the word embeddings: it is the
    tied matrix, not an unexpected weight."""
    folder = tmp_path / "gen"
    shutil.copytree(FIXTURES / "electra-gen-tiny", folder)
    weights = load_file(folder / "model.safetensors")
    weights["generator_lm_head.weight"] = weights["electra.embeddings.word_embeddings.weight"].clone()
    save_file(weights, folder / "model.safetensors")
    expected = load_file(FIXTURES / "electra-gen-tiny" / "expected.safetensors")
    a = outputs(MaskedLM.from_pretrained(folder), expected)[0]
    b = outputs(MaskedLM.from_pretrained(FIXTURES / "electra-gen-tiny"), expected)[0]
    assert torch.equal(a, b)


def test_an_electra_discriminator_starts_an_encoder_and_a_classifier():
    """Fine-tuning starts from a discriminator: its detection head is left out, a classification head
    starts fresh (with its warning), and the encoder is the discriminator's."""
    d = Discriminator.from_pretrained(FIXTURES / "electra-disc-tiny")
    with pytest.warns(UserWarning, match="classifier.dense"):
        classifier = SequenceClassifier.from_pretrained(FIXTURES / "electra-disc-tiny", num_labels=3)
    encoder = Encoder.from_pretrained(FIXTURES / "electra-disc-tiny")
    ids = blocks()
    with torch.no_grad():
        assert torch.equal(classifier.encoder(ids), d.encoder(ids))
        assert torch.equal(encoder(ids), d.encoder(ids))
    assert classifier.fresh_modules == ["dense", "out"] and classifier(ids).shape == (4, 3)


def test_a_bert_checkpoint_starts_a_discriminator_in_electra_s_layout(tmp_path):
    """MiniLM, BERT: the same encoder as ELECTRA's with E == H; the detection head starts fresh, and the
    model is saved as an ELECTRA discriminator."""
    with pytest.warns(UserWarning, match="discriminator_predictions.dense"):
        d = Discriminator.from_pretrained(BERT)
    assert d.fresh_modules == ["dense", "prediction"]
    assert (d.config.model_type, d.config.embedding_size, d.encoder.project) == ("electra", 32, None)
    bert = Encoder.from_pretrained(BERT)
    ids = blocks()
    with torch.no_grad():
        assert torch.equal(d.encoder(ids), bert(ids))
    d.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "electra"
    with torch.no_grad():
        assert torch.equal(Discriminator.from_pretrained(tmp_path)(ids), d(ids))


# -- 2. the two networks, one set of embeddings -----------------------------------------------------


def test_the_shared_embeddings_are_one_set_of_tensors():
    model = pair()
    d, g = model.discriminator.encoder.embed, model.generator.encoder.embed
    assert g is d
    assert model.generator.decoder.weight is d.word.weight  # G's output layer: the shared word embeddings
    state = model.state_dict()
    for name in ("word.weight", "position.weight", "token_type.weight", "norm.weight", "norm.bias"):
        assert (state[f"generator.encoder.embed.{name}"].data_ptr()
                == state[f"discriminator.encoder.embed.{name}"].data_ptr())
    # each keeps its own projection E -> H: 16 -> 8 and 16 -> 32
    assert model.generator.encoder.project.weight.shape == (8, 16)
    assert model.discriminator.encoder.project.weight.shape == (32, 16)
    # one optimizer sees each shared tensor once
    ids = {id(p) for p in model.parameters()}
    assert len(ids) == len(list(model.parameters()))
    assert len(list(model.parameters())) < len(list(model.discriminator.parameters())) + len(
        list(model.generator.parameters()))


def test_the_shared_embeddings_learn_from_both_losses():
    """G's loss alone and D's loss alone each give the shared embeddings a gradient; G's loss none to D's
    own weights, and D's none to G's (the sample carries no gradient into G)."""
    model, ids = pair(**NO_DROPOUT).train(), blocks()
    masked = electra.mask(electra.Objective(), TOK, ids, gen())
    uniform = torch.rand((len(masked.positions), 101), generator=gen(1))
    for part in ("generator", "discriminator"):
        model.zero_grad(set_to_none=True)
        g_logits, d_input, d_logits = model(ids, masked.input_ids, masked.selected, masked.positions, uniform)
        if part == "generator":
            from smoothing import cross_entropy
            cross_entropy(g_logits, masked.targets).backward()
        else:
            F.binary_cross_entropy_with_logits(d_logits, (d_input != ids).float()).backward()
        embed = model.discriminator.encoder.embed
        for p in (embed.word.weight, embed.position.weight, embed.norm.weight):
            assert p.grad is not None and p.grad.abs().sum() > 0, part
        other = model.discriminator if part == "generator" else model.generator
        assert other.dense.weight.grad is None and other.encoder.layers[0].q.weight.grad is None


def test_a_fresh_generator_follows_the_authors_sizes():
    """D's layer count; hidden 1/4 of D's (small, large) or 1/3 (base, hidden 768); heads of 64, at least
    one; a feed-forward 4x as wide; D's embeddings."""
    cases = [(dict(hidden_size=256, embedding_size=128, num_attention_heads=4, intermediate_size=1024),
              (64, 1, 256, 128)),  # ELECTRA-Small
             (dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072),  # base
              (256, 4, 1024, 768)),
             (dict(hidden_size=1024, num_attention_heads=16, intermediate_size=4096), (256, 4, 1024, 1024)),
             (dict(hidden_size=384, num_attention_heads=12, intermediate_size=1536),  # MiniLM
              (96, 1, 384, 384))]
    for fields, want in cases:
        d = EncoderConfig(model_type="electra", num_hidden_layers=3, **fields)
        g = electra.generator_config(d)
        assert (g.hidden_size, g.num_attention_heads, g.intermediate_size, g.embedding_size) == want, fields
        assert g.num_hidden_layers == 3 and g.vocab_size == d.vocab_size and g.model_type == "electra"
    half = electra.generator_config(EncoderConfig(model_type="electra", hidden_size=768), size=0.5)
    assert (half.hidden_size, half.num_attention_heads) == (384, 6)


def test_a_fresh_generator_is_built_beside_the_discriminator():
    model = electra.ElectraPretraining.build(FIXTURES / "electra-disc-tiny")
    g = model.generator.config
    assert (g.hidden_size, g.num_attention_heads, g.intermediate_size, g.embedding_size) == (8, 1, 32, 16)
    assert model.generator.encoder.embed is model.discriminator.encoder.embed


def test_the_pair_saves_two_hugging_face_folders_and_loads_tied_again(tmp_path):
    model, ids = pair(**NO_DROPOUT), blocks()
    with torch.no_grad():  # trained apart from the fixtures: the shared tensors are the ones saved
        model.discriminator.encoder.embed.word.weight.add_(0.1)
    model.save_pretrained(tmp_path)
    d = Discriminator.from_pretrained(tmp_path / "discriminator")
    g = MaskedLM.from_pretrained(tmp_path / "generator")
    assert torch.equal(d.encoder.embed.word.weight, g.encoder.embed.word.weight)  # a copy in each file
    again = electra.ElectraPretraining.from_pretrained(tmp_path, **NO_DROPOUT)
    assert again.generator.encoder.embed is again.discriminator.encoder.embed
    assert again.generator.decoder.weight is again.discriminator.encoder.embed.word.weight
    masked = electra.mask(electra.Objective(), TOK, ids, gen())
    uniform = torch.rand((len(masked.positions), 101), generator=gen(1))
    with torch.no_grad():
        for a, b in zip(model.eval()(ids, *masked[:3], uniform), again(ids, *masked[:3], uniform)):
            assert torch.equal(a, b)


def test_a_generator_whose_copy_of_the_embeddings_differs_is_tied_to_the_discriminator_s(tmp_path):
    pair().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "generator" / "model.safetensors")
    weights["electra.embeddings.position_embeddings.weight"] += 1
    save_file(weights, tmp_path / "generator" / "model.safetensors")
    with pytest.warns(UserWarning, match="position.weight.*differs from the discriminator's"):
        model = electra.ElectraPretraining.from_pretrained(tmp_path)
    d = Discriminator.from_pretrained(tmp_path / "discriminator")
    assert torch.equal(model.generator.encoder.embed.position.weight, d.encoder.embed.position.weight)


# -- 3. the step: mask, sample, detect, the two losses ------------------------------------------------


def test_masking_counts_and_its_85_15_split():
    """15% of each sequence's non-special tokens (the budget rounded at random: floor or ceil), never a
    special token; of them 85% [MASK], 15% their own token, and never a random one."""
    rows, length = 3000, 64
    ids = blocks(rows, length, seed=1)
    ids[::3, 40:] = TOK.pad_id  # a third of the rows are shorter, padded
    masked = electra.mask(electra.Objective(), TOK, ids, gen(2))
    maskable = ids > 4
    n = maskable.sum(1).float()
    count = masked.selected.sum(1).float()
    assert ((count == (n * 0.15).floor()) | (count == (n * 0.15).floor() + 1)).all()
    assert abs(count.sum() / n.sum() - 0.15) < 0.005
    assert not (masked.selected & ~maskable).any()
    at = masked.input_ids[masked.selected]
    kept = at == ids[masked.selected]
    assert ((at == TOK.mask_id) | kept).all()  # no random replacement
    share_masked = (at == TOK.mask_id).float().mean()
    assert abs(share_masked - 0.85) < 0.01, share_masked  # about 28,000 masked tokens: 5 standard errors
    assert torch.equal(masked.input_ids[~masked.selected], ids[~masked.selected])
    valid = masked.targets != IGNORE_INDEX
    assert torch.equal(masked.targets[valid], ids[masked.selected])  # row-major, as replace() needs


def test_gumbel_max_samples_from_the_softmax():
    """A chi-square test of 40,000 draws from fixed logits against softmax(logits), seeded; the same
    test refuses draws at temperature 2 (the test can tell a wrong distribution)."""
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    draws, critical = 40_000, 20.52  # chi-square with 5 degrees of freedom, p = 0.001

    def chi_square(sample_logits, seed):
        uniform = torch.rand((draws, len(logits)), generator=gen(seed))
        counts = torch.bincount(electra.gumbel_max(sample_logits.expand(draws, -1), uniform),
                                minlength=len(logits)).double()
        expected = draws * logits.double().softmax(-1)
        return float(((counts - expected) ** 2 / expected).sum())

    assert chi_square(logits, 0) < critical
    assert chi_square(logits / 2, 0) > 10 * critical
    # float32 noise whatever the logits' dtype, and a u of 0 gives no infinity
    low = electra.gumbel_max(logits.to(torch.bfloat16).expand(3, -1), torch.zeros(3, len(logits)))
    assert low.dtype == torch.long and (low == 0).all()


def test_a_label_is_original_where_the_generator_samples_the_original_token():
    """Every word of the batch is the same (id 7). A generator sure of 7 samples 7 at every masked position:
    D's input is the original and no label says replaced. Sure of 8, every masked position is replaced."""
    model = pair(**NO_DROPOUT)
    ids = torch.full((6, 20), 7)
    ids[:, 0], ids[:, -1] = TOK.cls_id, TOK.sep_id
    masked = electra.mask(electra.Objective(), TOK, ids, gen())
    assert masked.selected.sum() >= 12
    for sure_of, replaced in ((7, torch.zeros_like(masked.selected)), (8, masked.selected)):
        with torch.no_grad():
            model.generator.decoder.bias.zero_()[sure_of] = 1000.0
        uniform = torch.rand((len(masked.positions), 101), generator=gen(1))
        with torch.no_grad():
            _, d_input, _ = model(ids, masked.input_ids, masked.selected, masked.positions, uniform)
        assert torch.equal(d_input != ids, replaced)
        assert torch.equal(d_input[masked.selected], torch.full((int(masked.selected.sum()),), sure_of))


def test_the_loss_equals_a_hand_computation():
    """micro_batch_loss on a tiny batch, redone here token by token: the same masks and noise from the
    same seed, G's cross-entropy at the masked positions, its Gumbel-max samples written into the
    original, D's binary cross-entropy over every token, lambda = 50."""
    model, ids = pair(**NO_DROPOUT).train(), blocks(3, 16)
    objective = electra.Objective()
    got, n_masked = electra.micro_batch_loss(objective, model, TOK, ids, gen(5))

    g = gen(5)  # the same draws, in the same order: the mask, then the noise
    masked = electra.mask(objective, TOK, ids, g)
    uniform = torch.rand((len(masked.positions), 101), generator=g)
    where = masked.selected.nonzero().tolist()
    assert n_masked == len(where) >= 3
    logits = model.generator(masked.input_ids)  # every position: the masked ones read below
    d_input = ids.clone()
    generator_loss = 0.0
    for slot, (b, i) in enumerate(where):
        log_p = logits[b, i].log_softmax(-1)
        generator_loss = generator_loss - log_p[ids[b, i]] / len(where)
        d_input[b, i] = int(torch.argmax(logits[b, i].detach() - torch.log(-torch.log(uniform[slot]))))
    d_logits = model.discriminator(d_input)
    discriminator_loss = 0.0
    for b in range(ids.shape[0]):
        for i in range(ids.shape[1]):
            label, z = float(d_input[b, i] != ids[b, i]), d_logits[b, i]
            log_likelihood = label * F.logsigmoid(z) + (1 - label) * F.logsigmoid(-z)
            discriminator_loss = discriminator_loss - log_likelihood
    expected = generator_loss + 50 * discriminator_loss / ids.numel()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (d_input != ids).any()  # the case has replaced tokens to detect


def test_the_discriminator_s_loss_leaves_padding_out():
    objective = electra.Objective(electra_lambda=1.0)
    d_logits = torch.tensor([[2.0, -1.0, 5.0, 7.0]])
    replaced = torch.tensor([[True, False, False, True]])
    real = torch.tensor([[True, True, False, False]])
    empty = torch.full((1,), IGNORE_INDEX)
    got = electra.loss(objective, torch.zeros(1, 101), empty, d_logits, replaced, real)
    expected = -(F.logsigmoid(torch.tensor(2.0)) + F.logsigmoid(torch.tensor(1.0))) / 2
    torch.testing.assert_close(got, expected)


def test_detection_counts_and_metrics():
    """The counts of a Detection and the metrics: precision, recall and F1 on the replaced class, the
    all-"original" baseline, G's accuracy."""
    replaced = torch.tensor([[True, True, False, False, False, False]])
    flagged = torch.tensor([[True, False, True, False, False, False]])
    real = torch.tensor([[True, True, True, True, True, False]])
    masked = electra.Masked(None, None, None, torch.tensor([5, 6, IGNORE_INDEX]))
    detection = electra.Detection(masked, None, replaced, flagged, real, torch.tensor([True, False, False]))
    counts = electra.detection_counts(detection)
    assert counts.tolist() == [5, 2, 2, 1, 3, 2, 1]
    m = electra.detection_metrics(counts + counts)  # summed over two batches
    assert m["share_replaced"] == pytest.approx(0.4) and m["baseline_accuracy"] == pytest.approx(0.6)
    assert m["precision"] == m["recall"] == m["f1"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(0.6) and m["generator_accuracy"] == pytest.approx(0.5)


def test_detect_judges_a_batch_in_eval_mode_and_leaves_the_mode():
    model, ids = pair().train(), blocks(8, 24)
    first = electra.detect(electra.Objective(), model, TOK, ids, gen(3))
    again = electra.detect(electra.Objective(), model, TOK, ids, gen(3))
    assert model.training and torch.equal(first.flagged, again.flagged)  # no dropout: the same verdicts
    assert torch.equal(first.replaced, first.d_input != ids) and first.replaced.any()
    assert not (first.replaced & ~first.masked.selected).any()
    m = electra.detection_metrics(electra.detection_counts(first))
    assert 0 < m["share_replaced"] < 0.15 and math.isclose(m["baseline_accuracy"], 1 - m["share_replaced"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the host-sync check needs one")
def test_the_step_never_waits_for_the_gpu():
    model, ids = pair().cuda().train(), blocks(8, 64).cuda()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss, n = electra.micro_batch_loss(electra.Objective(), model, TOK, ids,
                                           torch.Generator("cuda").manual_seed(0))
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss) and n > 0


# -- 4. bad input, refused in one line that names it --------------------------------------------------


def test_a_roberta_checkpoint_is_refused_as_a_discriminator():
    with pytest.raises(ValueError, match=r"roberta-mlm-tiny: a roberta model, where ELECTRA needs a "
                                         r"BERT-layout encoder \(model_type bert or electra\)"):
        Discriminator.from_pretrained(FIXTURES / "parity" / "roberta-mlm-tiny")


def generator_folder(tmp_path, **changes):
    folder = tmp_path / "generator"
    shutil.copytree(FIXTURES / "electra-gen-tiny", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


@pytest.mark.parametrize("changes,message", [
    (dict(vocab_size=102), "its vocab size is 102, the discriminator's 101"),
    (dict(embedding_size=8), r"its embedding size \(width\) is 8, the discriminator's 16"),
    (dict(max_position_embeddings=32), "its max position embeddings is 32, the discriminator's 64"),
    (dict(model_type="bert", embedding_size=8),
     "a bert model, where the generator must be an ELECTRA generator"),
])
def test_a_generator_that_cannot_share_the_embeddings_is_refused(tmp_path, changes, message):
    folder = generator_folder(tmp_path, **changes)
    with pytest.raises(ValueError, match=re.escape(f"--generator {folder}: ") + message):
        electra.ElectraPretraining.build(FIXTURES / "electra-disc-tiny", folder)


def test_a_generator_object_of_another_width_is_refused():
    d = Discriminator.from_pretrained(FIXTURES / "electra-disc-tiny")
    g = MaskedLM(EncoderConfig(model_type="electra", vocab_size=101, hidden_size=8, num_attention_heads=1,
                               embedding_size=12, max_position_embeddings=64))
    with pytest.raises(ValueError, match=r"the generator: its embedding size \(width\) is 12, "
                                         r"the discriminator's 16"):
        electra.ElectraPretraining(d, g)


@pytest.mark.parametrize("settings,message", [
    (dict(electra_lambda=0.0), r"--electra-lambda 0.0: D's loss weight must be a number > 0"),
    (dict(electra_lambda=-1.0), r"--electra-lambda -1.0"),
    (dict(electra_lambda=float("nan")), r"--electra-lambda nan"),
    (dict(electra_mask_ratio=0.0),
     r"--electra-mask-ratio 0.0: the share of tokens masked must be in \(0, 1\)"),
    (dict(electra_mask_ratio=1.0), r"--electra-mask-ratio 1.0"),
    (dict(generator_size=1.5), r"--generator-size 1.5: a fraction of D's width in \(0, 1\]"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        electra.Objective(**settings)


def parse(argv):
    parser = argparse.ArgumentParser()
    electra.Objective.add_options(parser)
    return parser.parse_args(argv)


def test_the_options(capsys):
    assert electra.Objective.from_options(parse([])) == electra.Objective()
    mine = electra.Objective.from_options(parse(["--electra-lambda", "20", "--electra-mask-ratio", "0.25",
                                                 "--generator-size", "0.5"]))
    assert (mine.electra_lambda, mine.electra_mask_ratio, mine.generator_size) == (20.0, 0.25, 0.5)
    for argv, said in ((["--electra-lambda", "0"], "--electra-lambda: 0 is not in (0, inf)"),
                       (["--electra-mask-ratio", "1"], "--electra-mask-ratio: 1 is not in (0, 1)"),
                       (["--generator-size", "big"], "--generator-size: 'big' is not a number")):
        with pytest.raises(SystemExit):
            parse(argv)
        assert said in capsys.readouterr().err
    with pytest.raises(ValueError, match="--generator-size 0.5 sizes a fresh generator"):
        electra.Objective.from_options(parse(["--generator", "g", "--generator-size", "0.5"]))


def test_embeddings_narrower_than_the_layers_only_in_electra_s_layout():
    with pytest.raises(ValueError, match="embedding_size 16 differs from hidden_size 32: only model_type "
                                         "'electra' projects its embeddings, not 'bert'"):
        EncoderConfig(hidden_size=32, num_attention_heads=4, embedding_size=16)
    assert "embedding_size" not in EncoderConfig().to_dict()  # BERT's and RoBERTa's files stay as they were
    assert EncoderConfig.from_dict({"model_type": "electra"}).embedding_size == 128  # transformers' default


def test_a_pair_keeps_its_parts_mode_and_detect_leaves_it_so():
    """A pair of loaded (eval-mode) parts is in eval mode, so detect(), which restores the pair's mode,
    leaves dropout off in every module; a pair put in training stays in training."""
    for build in (pair, lambda: electra.ElectraPretraining.build(FIXTURES / "electra-disc-tiny")):
        model = build()
        assert not any(m.training for m in model.modules())
        electra.detect(electra.Objective(), model, TOK, blocks(), gen())
        assert not any(m.training for m in model.modules())
        model.train()
        electra.detect(electra.Objective(), model, TOK, blocks(), gen())
        assert all(m.training for m in model.modules())
