"""Tests for masking.py: budgets, random and whole-word masking, scores, selection."""

import math
from types import SimpleNamespace

import pytest
import torch

from masking import (
    IGNORE_INDEX, apply_mask, budget, labels_for, random_mask, score_tokens,
    select_informative, special_tokens_mask,
)

PAD, CLS, SEP, MASK, UNK = 0, 1, 2, 3, 4
SPECIALS = [PAD, CLS, SEP, MASK, UNK]
VOCAB = 1000


def gen(seed):
    return torch.Generator().manual_seed(seed)


def padded_batch(batch=64, length=40, seed=0):
    """[CLS] tokens [SEP] [PAD]..., with lengths varying per row."""
    g = gen(seed)
    ids = torch.randint(len(SPECIALS), VOCAB, (batch, length), generator=g)
    lengths = torch.randint(3, length + 1, (batch,), generator=g)
    pos = torch.arange(length)
    ids[:, 0] = CLS
    ids[torch.arange(batch), lengths - 1] = SEP
    attention = pos < lengths.unsqueeze(1)
    ids[~attention] = PAD
    maskable = ~special_tokens_mask(ids, SPECIALS) & attention
    return ids, maskable


# ----------------------------------------------------------------- special tokens

def test_special_tokens_mask_from_object_and_from_list():
    ids = torch.tensor([[CLS, 7, 8, SEP, PAD], [CLS, UNK, 9, MASK, SEP]])
    expected = torch.tensor([[True, False, False, True, True], [True, True, False, True, True]])
    tokenizer = SimpleNamespace(special_ids={0, 1, 2, 3, 4})
    assert torch.equal(special_tokens_mask(ids, tokenizer), expected)
    assert torch.equal(special_tokens_mask(ids, SPECIALS), expected)
    assert not special_tokens_mask(ids, []).any()


# ----------------------------------------------------------------- budget

def test_budget_is_probabilistic_rounding_with_exact_expectation():
    n, ratio, rows = 10, 0.15, 20000
    maskable = torch.zeros(rows, 30, dtype=torch.bool)
    maskable[:, 5:5 + n] = True
    k = budget(maskable, ratio, gen(0))
    assert k.dtype == torch.long and k.shape == (rows,)
    assert set(k.unique().tolist()) == {1, 2}  # floor(1.5) or floor(1.5) + 1
    sigma = math.sqrt(0.25 / rows)  # Bernoulli(0.5) on the fractional part
    assert abs(k.float().mean().item() - n * ratio) < 5 * sigma
    assert torch.equal(k, budget(maskable, ratio, gen(0)))


def test_budget_never_exceeds_maskable_and_zero_rows_get_zero():
    maskable = torch.zeros(3, 8, dtype=torch.bool)
    maskable[1, :2] = True
    maskable[2] = True
    k = budget(maskable, ratio=1.0, generator=gen(1))
    assert k.tolist() == [0, 2, 8]


# ----------------------------------------------------------------- random_mask

def test_random_mask_count_follows_budget_and_skips_specials():
    ids, maskable = padded_batch()
    corrupted, labels, selected = random_mask(ids, maskable, MASK, VOCAB, generator=gen(3))
    counts = selected.sum(-1)
    n = maskable.sum(-1)
    assert torch.equal(counts, budget(maskable, 0.15, gen(3)))  # budget drawn first
    floors = torch.tensor([math.floor(v * 0.15) for v in n.tolist()])
    assert ((counts >= floors) & (counts <= floors + 1)).all()
    assert not (selected & ~maskable).any()
    assert not selected[torch.isin(ids, torch.tensor(SPECIALS))].any()


def test_random_mask_mean_count_is_n_times_ratio():
    rows, n = 5000, 37
    ids = torch.full((rows, n + 2), 10)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, [0, -1]] = False
    _, _, selected = random_mask(ids, maskable, MASK, VOCAB, generator=gen(4))
    mean = selected.sum(-1).float().mean().item()
    frac = n * 0.15 - math.floor(n * 0.15)
    assert abs(mean - n * 0.15) < 5 * math.sqrt(frac * (1 - frac) / rows)


def test_random_mask_labels_and_unselected_positions():
    ids, maskable = padded_batch(seed=5)
    corrupted, labels, selected = random_mask(ids, maskable, MASK, VOCAB, generator=gen(6))
    assert (labels[~selected] == IGNORE_INDEX).all()
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(labels, labels_for(ids, selected))
    assert torch.equal(corrupted[~selected], ids[~selected])


def test_random_mask_80_10_10_split():
    vocab, rows, length = 50000, 1000, 100  # 100k selected tokens at ratio 1
    ids = torch.randint(10, 110, (rows, length), generator=gen(7))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    corrupted, _, selected = random_mask(ids, maskable, MASK, vocab, ratio=1.0, generator=gen(8))
    total = selected.sum().item()
    assert total == rows * length
    masked = corrupted == MASK
    kept = corrupted == ids
    rand = ~masked & ~kept  # a random draw equal to the original (p = 2e-5) counts as kept
    for observed, p in ((masked, 0.8), (kept, 0.1), (rand, 0.1)):
        share = observed.sum().item() / total
        assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / total)
    # Random replacements are uniform over the whole vocabulary: check quarters.
    drawn = corrupted[rand]
    m = drawn.numel()
    for q in range(4):
        share = ((drawn >= q * vocab // 4) & (drawn < (q + 1) * vocab // 4)).sum().item() / m
        assert abs(share - 0.25) < 5 * math.sqrt(0.25 * 0.75 / m)


def test_random_mask_seed_reproduces_and_differs():
    ids, maskable = padded_batch(seed=9)
    a = random_mask(ids, maskable, MASK, VOCAB, generator=gen(10))
    b = random_mask(ids, maskable, MASK, VOCAB, generator=gen(10))
    c = random_mask(ids, maskable, MASK, VOCAB, generator=gen(11))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[2], c[2])


# ----------------------------------------------------------------- whole words

WORDS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "the", "cat", "##s", "play", "##ing",
         "##ful", "un", "##believ", "##able", "run", "a", "##ly"]
CONTINUATION = torch.tensor([w.startswith("##") for w in WORDS])


def word_batch(rows=200, length=48, seed=12):
    g = gen(seed)
    ids = torch.randint(5, len(WORDS), (rows, length), generator=g)
    ids[:, 0] = CLS
    ids[:, 1] = WORDS.index("##s")  # a piece right after [CLS] must start its own word
    ids[:, -1] = SEP
    ids[::3, -6:-1] = PAD  # padding inside some rows
    maskable = ~special_tokens_mask(ids, SPECIALS)
    return ids, maskable


def words_of(row_ids, row_maskable):
    """Per-row loop reference: lists of positions, one list per word."""
    words = []
    for i, (t, m) in enumerate(zip(row_ids.tolist(), row_maskable.tolist())):
        if not m:
            continue
        if words and CONTINUATION[t] and row_maskable[i - 1] and words[-1][-1] == i - 1:
            words[-1].append(i)
        else:
            words.append([i])
    return words


def test_whole_word_masking_selects_whole_words_up_to_budget():
    ids, maskable = word_batch()
    _, labels, selected = random_mask(ids, maskable, MASK, len(WORDS), ratio=0.3,
                                      generator=gen(13), word_continuation=CONTINUATION)
    k = budget(maskable, 0.3, gen(13))
    assert not (selected & ~maskable).any()
    assert torch.equal(labels[selected], ids[selected])
    saw_multi_piece_word = False
    for b in range(ids.shape[0]):
        words = words_of(ids[b], maskable[b])
        count = selected[b].sum().item()
        for w in words:
            flags = selected[b, w]
            assert flags.all() or not flags.any(), (b, w)
            saw_multi_piece_word |= len(w) > 1 and bool(flags.all())
        # Reaches the budget, overshooting by at most the last word's extra pieces.
        longest = max(len(w) for w in words)
        assert k[b] <= count <= k[b] + longest - 1
    assert saw_multi_piece_word
    assert selected[:, 1].any()  # the piece after [CLS] is a word of its own


def test_whole_word_without_continuations_equals_token_masking():
    ids, maskable = padded_batch(seed=14)
    no_pieces = torch.zeros(VOCAB, dtype=torch.bool)
    a = random_mask(ids, maskable, MASK, VOCAB, generator=gen(15))
    b = random_mask(ids, maskable, MASK, VOCAB, generator=gen(15), word_continuation=no_pieces)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# ----------------------------------------------------------------- score_tokens

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_score_tokens_matches_hand_computation(dtype):
    logits = (3 * torch.randn(4, 9, 50, generator=gen(16))).to(dtype)
    ids = torch.randint(50, (4, 9), generator=gen(17))
    x = logits.float()
    p = x.exp() / x.exp().sum(-1, keepdim=True)
    loss = -torch.log(p.gather(-1, ids.unsqueeze(-1)).squeeze(-1))
    entropy = -(p * torch.log(p)).sum(-1)
    got_loss, got_entropy = score_tokens(logits, ids), score_tokens(logits, ids, "entropy")
    assert got_loss.dtype == got_entropy.dtype == torch.float32
    assert got_loss.shape == ids.shape
    torch.testing.assert_close(got_loss, loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_entropy, entropy, rtol=1e-5, atol=1e-5)
    # Only some positions projected: (n, vocab) with (n,).
    torch.testing.assert_close(score_tokens(logits[1], ids[1]), loss[1], rtol=1e-5, atol=1e-5)


def test_score_tokens_unknown_kind():
    with pytest.raises(ValueError):
        score_tokens(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), kind="pmi")


# ----------------------------------------------------------------- select_informative

def topk_reference(scores, maskable, k):
    """Per-row loop: the k highest maskable scores, ties to the lower position."""
    out = torch.zeros_like(maskable)
    for b in range(scores.shape[0]):
        cand = [i for i in range(scores.shape[1]) if maskable[b, i]]
        cand.sort(key=lambda i: (-scores[b, i].item(), i))
        out[b, cand[:k[b]]] = True
    return out


def test_select_informative_ratio_mode_is_top_k_with_ties_to_lower_position():
    ids, maskable = padded_batch(seed=18)
    scores = torch.randint(0, 4, ids.shape, generator=gen(19)).float()  # many ties
    selected = select_informative(scores, maskable, ratio=0.2, generator=gen(20))
    k = budget(maskable, 0.2, gen(20))
    assert torch.equal(selected, topk_reference(scores, maskable, k))
    assert torch.equal(selected, select_informative(scores, maskable, ratio=0.2, generator=gen(20)))


def test_select_informative_equal_scores_take_first_positions():
    maskable = torch.tensor([[False, True, True, True, True, False, True]])
    selected = select_informative(torch.ones(1, 7), maskable, ratio=0.5, generator=gen(21))
    k = budget(maskable, 0.5, gen(21)).item()
    assert selected[0].nonzero().squeeze(-1).tolist() == [1, 2, 3, 4, 6][:k]


def test_select_informative_threshold_mode():
    ids, maskable = padded_batch(seed=22)
    scores = torch.rand(ids.shape, generator=gen(23)) * 0.3
    scores[:, 1] = 0.1  # exactly at the threshold: not informative (strictly greater)
    selected = select_informative(scores, maskable, ratio=0.15, threshold=0.1)
    assert torch.equal(selected, (scores > 0.1) & maskable)
    assert not selected[:, 1].any()
    assert selected.sum() > maskable.sum() * 0.5  # far beyond the 15% ratio: ratio ignored


def test_select_informative_never_picks_nan_or_unmaskable():
    ids, maskable = padded_batch(seed=24)
    scores = torch.rand(ids.shape, generator=gen(25))
    scores[~maskable] = 100.0  # highest scores on specials and padding
    scores[:, 1::2] = float("nan")
    for kwargs in ({}, {"threshold": 0.5}, {"informative_fraction": 0.5}):
        selected = select_informative(scores, maskable, ratio=0.5, generator=gen(26), **kwargs)
        assert selected.any()
        assert not (selected & ~maskable).any() and not selected[:, 1::2].any()


def test_informative_fraction_endpoints_and_middle():
    ids, maskable = padded_batch(seed=27)
    scores = torch.rand(ids.shape, generator=gen(28))
    pure = select_informative(scores, maskable, informative_fraction=1.0, generator=gen(29))
    assert torch.equal(pure, topk_reference(scores, maskable, budget(maskable, 0.15, gen(29))))
    _, _, random_selected = random_mask(ids, maskable, MASK, VOCAB, generator=gen(30))
    zero = select_informative(scores, maskable, informative_fraction=0.0, generator=gen(30))
    assert torch.equal(zero, random_selected)
    assert not torch.equal(zero, select_informative(scores, maskable, generator=gen(30)))
    # Half: round(0.5 * k) top tokens plus random others, k in all.
    k = budget(maskable, 0.15, gen(31))
    half = select_informative(scores, maskable, informative_fraction=0.5, generator=gen(31))
    assert torch.equal(half.sum(-1), k)
    top = topk_reference(scores, maskable, torch.round(0.5 * k).long())
    assert not (top & ~half).any()
    assert not (half & ~maskable).any()


# ----------------------------------------------------------------- apply_mask

def test_apply_mask_default_masks_every_selected_token_only():
    ids, maskable = padded_batch(seed=32)
    before = ids.clone()
    selected = maskable & (torch.rand(ids.shape, generator=gen(33)) < 0.3)
    out = apply_mask(ids, selected, MASK)
    assert torch.equal(ids, before)  # input untouched
    assert (out[selected] == MASK).all()
    assert torch.equal(out[~selected], ids[~selected])


def test_apply_mask_requires_vocab_size_for_random_tokens():
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(ValueError):
        apply_mask(ids, ids > 0, MASK, split=(0.8, 0.1, 0.1))
    with pytest.raises(ValueError):
        apply_mask(ids, ids > 0, MASK, VOCAB, split=(0.8, 0.1, 0.2))
