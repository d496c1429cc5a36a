"""self_evolution.py: one micro-batch in the paper's order, the phases, the one selection, the settings."""

import pytest
import torch

import self_evolution as se
import train
from masking import (IGNORE_INDEX, MaskingBatch, apply_mask, random_mask, score_tokens, select_informative,
                     special_tokens_mask)
from model import MaskedLM
from smoothing import cross_entropy, token_specific_label_smoothing
from tokenizer import Tokenizer


@pytest.fixture
def tiny(tiny_checkpoint):
    """The tiny model without dropout (so that two forwards agree), its tokenizer, and a batch of real
    text."""
    model = MaskedLM.from_pretrained(tiny_checkpoint, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
    tok = Tokenizer(tiny_checkpoint)
    ids = tok(["the old cat saw a dog near the river . the big king took a bird near the hill ."] * 2 +
              ["the red queen found a child near the city . a dog saw the cat ."] * 2)["input_ids"]
    return model.train(), tok, ids


def gen(seed=3):
    return torch.Generator().manual_seed(seed)


def test_one_micro_batch_follows_the_paper(tiny):
    """micro_batch_loss = question, select, corrupt, then TLS on the masked forward, computed here by hand."""
    model, tok, ids = tiny
    got, n_masked = se.micro_batch_loss(se.Method(), model, tok, ids, gen())
    assert model.training  # questioning switched to eval mode and back
    with torch.no_grad():  # stage 1: the unmasked forward, scored by the token's own loss
        unmasked = model.eval()(ids)
    model.train()
    scores = score_tokens(unmasked, ids, "loss")
    selected = select_informative(scores, ~special_tokens_mask(ids, tok), 0.15, generator=gen())
    corrupted = apply_mask(ids, selected, tok.mask_id)  # every selected token -> [MASK]
    logits = model(corrupted, positions=selected)
    expected = token_specific_label_smoothing(logits, ids[selected], unmasked[selected], 0.1)
    assert n_masked == selected.sum() >= 4
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_the_warm_up_masks_at_random_and_trains_with_cross_entropy(tiny):
    model, tok, ids = tiny
    method = se.Method(masking="informative", smoothing="token")
    masked = se.corrupt(method, model, tok, ids, gen(), se.MaskingContext(phase=se.HEAD))
    maskable = ~special_tokens_mask(ids, tok)
    corrupted, _, selected = random_mask(ids, maskable, tok.mask_id, tok.vocab_size, 0.15, gen())
    assert torch.equal(masked.input_ids, corrupted) and masked.reference is None
    assert torch.equal(masked.targets[masked.targets != IGNORE_INDEX], ids[selected])
    logits = torch.randn(len(masked.targets), tok.vocab_size)
    assert (se.loss(method, logits, masked.targets, None, phase=se.HEAD)
            == cross_entropy(logits, masked.targets))


def test_offline_scores_are_used_without_a_forward(tiny):
    """Stored scores select the tokens; nothing questions the model (here there is none)."""
    _, tok, ids = tiny
    scores = torch.rand(ids.shape, generator=gen(1))
    masked = se.corrupt(se.Method(smoothing="none"), None, tok, ids, gen(), se.MaskingContext(stored_scores=scores))
    expected = select_informative(scores, ~special_tokens_mask(ids, tok), 0.15, generator=gen())
    assert torch.equal(masked.input_ids, apply_mask(ids, expected, tok.mask_id))


def test_select_applies_the_method_s_rule():
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 3]])
    maskable = torch.tensor([[False] + [True] * 6 + [False]])
    scores = torch.tensor([[9.0, 0.05, 3.0, 0.2, 0.0, 5.0, 0.1, 9.0]])
    batch = lambda: MaskingBatch(ids, maskable, 0.5, gen(), stored_scores=scores)
    threshold = se.select(se.Method(select="threshold", threshold=0.1), batch())
    # > 0.1, specials never
    assert threshold.tolist() == [[False, False, True, True, False, True, False, False]]
    top = se.select(se.Method(select="ratio", ratio=0.5), batch())
    assert top.sum() in (3, 4) and top[0, [2, 5]].all() and not top[0, [0, 7]].any()  # the highest first
    mine = se.Method(masking_fn="mine.py:everything",
                     rule=lambda b: torch.ones_like(b.input_ids, dtype=torch.bool))
    assert torch.equal(se.select(mine, batch()), maskable)  # a rule of your own, kept to the maskable tokens


def test_the_method_s_settings_come_from_train_py_s_options():
    _, method = train.parse_args([])
    # train.py's defaults are the method's own; the questioning precision waits for the machine ("auto")
    assert method == se.Method(questioning_precision="auto")
    _, method = train.parse_args(["--masking", "random", "--score", "entropy", "--select", "threshold",
                                  "--ratio", "0.2", "--threshold", "0.5", "--informative-fraction", "0.5",
                                  "--informative-split", "0.8", "0.1", "0.1", "--whole-word",
                                  "--smoothing", "uniform", "--alpha", "0.3",
                                  "--questioning-precision", "bf16"])
    assert method == se.Method(masking="random", score="entropy", select="threshold", ratio=0.2,
                               threshold=0.5, informative_fraction=0.5, informative_split=(0.8, 0.1, 0.1),
                               whole_word=True, smoothing="uniform", alpha=0.3, questioning_precision="bf16")
