"""probe.py: fill-mask, the fixed held-out masks, and what self-questioning sees."""

import warnings

import pytest
import torch

import data
import probe
import runtime
import self_evolution as se
from masking import apply_mask, labels_for, random_mask, score_tokens, select_informative, special_tokens_mask
from model import MaskedLM
from tokenizer import Tokenizer

CPU = runtime.Machine(torch.device("cpu"))


def test_fill_mask_and_command(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MaskedLM.from_pretrained("minilm")
    tok = Tokenizer("minilm")
    out = probe.fill_mask(model, tok, "Paris is the <mask> of France and [MASK] too.", k=3)
    assert len(out) == 2 and all(len(f) == 3 for f in out)
    assert all(f[0][1] >= f[1][1] >= f[2][1] for f in out)
    with pytest.raises(ValueError, match="no mask token"):
        probe.fill_mask(model, tok, "no mask here")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe.main(["--model", "minilm", "--top-k", "2", "The [MASK] is blue."])
    assert "mask 1:" in capsys.readouterr().out


@pytest.fixture
def tiny(tiny_checkpoint, tiny_corpus, tmp_path):
    model = MaskedLM.from_pretrained(tiny_checkpoint)
    tok = Tokenizer(tiny_checkpoint)
    _, heldout, _ = data.load_corpus(str(tiny_corpus), tok, 32, 64, 0.1, tmp_path / "cache")
    return model, tok, heldout


def test_random_masks_are_fixed(tiny):
    _, tok, heldout = tiny
    masks = probe.random_masks(tok, heldout, 10, 4, torch.device("cpu"))
    assert [len(c) for c, _ in masks] == [4, 4, 2]
    generator = torch.Generator().manual_seed(probe.EVAL_SEED)  # one generator, batch after batch
    for rows, (corrupted, labels) in zip(([0, 1, 2, 3], [4, 5, 6, 7], [8, 9]), masks):
        ids = heldout.batch(rows)
        maskable = ~special_tokens_mask(ids, tok)
        expected = random_mask(ids, maskable, tok.mask_id, tok.vocab_size, 0.15, generator)
        assert torch.equal(corrupted, expected[0]) and torch.equal(labels, expected[1])


def test_hardest_masks_are_the_top_15_percent_whatever_the_method_s_rule(tiny):
    model, tok, heldout = tiny
    masks = probe.hardest_masks(se.Method(score="entropy"), model, tok, heldout, 8, 4, CPU)
    other_rule = se.Method(score="entropy", select="threshold", ratio=0.5, informative_fraction=0.2)
    other_masks = probe.hardest_masks(other_rule, model, tok, heldout, 8, 4, CPU)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(masks, other_masks))
    generator = torch.Generator().manual_seed(probe.EVAL_SEED)
    for rows, (corrupted, labels) in zip(([0, 1, 2, 3], [4, 5, 6, 7]), masks):
        ids = heldout.batch(rows)
        with torch.no_grad():
            scores = score_tokens(model(ids), ids, "entropy")
        selected = select_informative(scores, ~special_tokens_mask(ids, tok), 0.15, generator=generator)
        assert torch.equal(corrupted, apply_mask(ids, selected, tok.mask_id))
        assert torch.equal(labels, labels_for(ids, selected))


def test_the_picks_and_the_score_page_show_the_rule_s_selection(tiny, tmp_path):
    model, tok, heldout = tiny
    method = se.Method(ratio=0.3)
    text = probe.show_picks(method, model, tok, "the old cat saw a dog near the river .", CPU)
    picks, highest = text.splitlines()
    assert picks.startswith("self-questioning picks (loss score, brackets): [CLS] ")
    ids = tok("the old cat saw a dog near the river .")["input_ids"]
    scores = score_tokens(se.question(model, ids), ids, "loss")
    chosen = se.select(method, se.masking_batch(method, model, tok, ids, torch.Generator().manual_seed(0)))
    assert picks.count("[") - 2 == chosen.sum() == 3  # 30% of 10 tokens; [CLS] and [SEP] are not picks
    assert highest.startswith(f"  highest scores: {tok.tokens([ids[0, scores[0, 1:-1].argmax() + 1]])[0]} ")
    page = tmp_path / "scores.html"
    probe.write_score_page(method, model, tok, heldout, CPU, page, n=2)
    assert page.read_text().count("<span title=") == 2 * 32
    blocks = heldout.batch([0, 1])
    picked = se.select(method, se.masking_batch(method, model, tok, blocks, torch.Generator().manual_seed(0)))
    assert page.read_text().count("text-decoration:underline") == picked.sum() > 0
