"""Grader of exercise 1 (entropy.py): the budget of tokens with the most uncertain predictions."""

import torch

from grading import (CLS, PAD, SEP, VOCAB, assert_selection, assert_the_seed_reproduces, batch_of, gen,
                     loss_scores, random_rows, rows, top_k)
from masking import budget

EXERCISE = "entropy"


def spread_logits(input_ids, seed, floor=-30.0):
    """Logits that spread each position's belief evenly over a different number of tokens.

    Position i of a row puts equal logits on m_i tokens (m_i all different in a
    row, so H_i = log m_i never ties) and `floor` on the rest. The m_i tokens
    are drawn at random, so the shown token is usually not among them: the
    loss score then ranks the positions differently from the entropy.
    """
    g = gen(seed)
    n_rows, length = input_ids.shape
    logits = torch.full((n_rows, length, VOCAB), floor)
    for b in range(n_rows):
        sizes = torch.randperm(VOCAB - 1, generator=g)[:length] + 1
        for i in range(length):
            logits[b, i, torch.randperm(VOCAB, generator=g)[:sizes[i]]] = 0.0
    return logits


def entropies(logits):
    """H_i = -sum_v p log p in float64; terms with p = 0 count 0."""
    logp = torch.log_softmax(logits.double(), -1)
    return -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)


def expected(batch, logits, seed):
    """The budget (drawn first from a generator seeded like the batch's) of highest entropies."""
    return top_k(entropies(logits), batch.maskable, budget(batch.maskable, batch.ratio, gen(seed)))


def test_returns_a_bool_mask_without_special_tokens(solution):
    ids = torch.tensor([[CLS, 5, 6, 7, 8, 9, 10, SEP],
                        [CLS, 11, 12, SEP, PAD, PAD, PAD, PAD],
                        [CLS, SEP, PAD, PAD, PAD, PAD, PAD, PAD]])  # nothing to mask
    logits = spread_logits(ids, 0)
    logits[~batch_of(ids).maskable] = 0.0  # special tokens get the highest entropy of all
    batch = batch_of(ids, logits, ratio=0.5)
    selected = solution(batch)
    assert_selection(selected, batch)
    assert not selected[2].any()


def test_selects_the_highest_entropy_tokens(solution):
    ids = random_rows(8, 16, seed=1)
    logits = spread_logits(ids, 1)
    batch = batch_of(ids, logits, ratio=0.25, generator=gen(7))
    want = expected(batch, logits, 7)
    # Sanity of the grader: the loss score would pick other tokens.
    assert not torch.equal(want, top_k(loss_scores(ids, logits), batch.maskable, want.sum(-1)))
    got = solution(batch)
    assert_selection(got, batch)
    assert rows(got) == rows(want), \
        "these are not the highest-entropy tokens (is it the entropy, not the loss?)"


def test_count_is_the_budget_of_each_sequence(solution):
    ids = random_rows(32, 24, seed=2)
    batch = batch_of(ids, spread_logits(ids, 2), ratio=0.15, generator=gen(3))
    got = solution(batch)
    assert got.sum(-1).tolist() == budget(batch.maskable, 0.15, gen(3)).tolist()


def test_tokens_ruled_out_with_minus_infinity_do_not_make_nan(solution):
    ids = random_rows(8, 16, seed=4)
    logits = spread_logits(ids, 4, floor=float("-inf"))
    batch = batch_of(ids, logits, ratio=0.25, generator=gen(5))
    got = solution(batch)
    assert_selection(got, batch)
    assert rows(got) == rows(expected(batch, logits, 5))


def test_bfloat16_logits_are_ranked_in_float32(solution):
    # Every position raises one token by a different bf16-exact logit between
    # 0.25 and 1.9: all entropies lie within 0.15 of each other, closer than
    # bf16 can tell apart (steps of 0.016 near 3.6), but float32 ranks them.
    n_rows, length = 8, 28
    ids = torch.full((n_rows, length), 5)
    ids[:, 0], ids[:, -1] = CLS, SEP
    g = gen(6)
    raised = torch.stack([0.25 + torch.randperm(length, generator=g) / 16 for _ in range(n_rows)])
    logits = torch.zeros(n_rows, length, VOCAB).bfloat16()
    logits[..., 7] = raised.bfloat16()
    batch = batch_of(ids, logits, ratio=0.25, generator=gen(8))
    got = solution(batch)
    assert_selection(got, batch)
    assert rows(got) == rows(expected(batch, logits, 8)), \
        "compute the entropy in float32: bf16 cannot rank these"


def test_the_seed_reproduces_the_mask(solution):
    ids = random_rows(16, 24, seed=9)
    logits = spread_logits(ids, 9)
    # The only chance here is the budget's rounding: other seeds round other rows up.
    assert_the_seed_reproduces(lambda seed: solution(batch_of(ids, logits, ratio=0.15, generator=gen(seed))))
