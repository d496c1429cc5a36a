"""Grader of exercise 5 (frequency.py): exactly the budget, drawn without replacement with weights
count ** -0.5.

The statistical tests draw thousands of rows with fixed seeds and allow
margins of four or more standard deviations: a right solution passes whatever
its own way of drawing, a wrong weighting fails by far.
"""

import torch

from grading import (CLS, SEP, VOCAB, assert_selection, assert_the_seed_reproduces, batch_of, gen,
                     logits_with_loss, random_rows)
from masking import budget

EXERCISE = "frequency"


def counts_of(pairs, default=1000):
    counts = torch.full((VOCAB,), default, dtype=torch.long)
    for token, count in pairs.items():
        counts[token] = count
    return counts


def rows_of(tokens, n_rows, seed):
    """n_rows rows [CLS] + `tokens` in a random order per row + [SEP]."""
    g = gen(seed)
    body = torch.stack([torch.tensor(tokens)[torch.randperm(len(tokens), generator=g)]
                        for _ in range(n_rows)])
    return torch.cat([torch.full((n_rows, 1), CLS), body, torch.full((n_rows, 1), SEP)], 1)


def inclusion(weights, k):
    """P(each item is among k drawn one by one without replacement, proportionally to weight): exact."""
    p = [0.0] * len(weights)

    def draw(left, taken, prob):
        if len(taken) == k:
            for i in taken:
                p[i] += prob
            return
        total = sum(weights[i] for i in left)
        for i in left:
            draw(left - {i}, taken + [i], prob * weights[i] / total)

    draw(set(range(len(weights))), [], 1.0)
    return p


def test_exactly_the_budget_and_no_model(solution):
    ids = random_rows(64, 24, seed=1)
    counts = torch.randint(0, 5000, (VOCAB,), generator=gen(1))
    counts[5:8] = 0  # tokens the corpus never showed
    batch = batch_of(ids, logits_with_loss(ids, torch.zeros(ids.shape)), ratio=0.15, generator=gen(2),
                     token_counts=counts)
    got = solution(batch)
    assert_selection(got, batch)
    assert not batch.calls, "frequency weighting needs no model: do not question it"
    assert got.sum(-1).tolist() == budget(batch.maskable, 0.15, gen(2)).tolist()


def test_a_hundred_times_more_frequent_is_ten_times_less_likely(solution):
    # Per row 8 rare tokens (4 seen once, 4 never: count 0 counts as 1) and 8
    # common ones (count 100); the budget is 1 token.
    once, never, common = list(range(5, 9)), list(range(9, 13)), list(range(13, 21))
    ids = rows_of(once + never + common, 4000, seed=3)
    counts = counts_of({**dict.fromkeys(once, 1), **dict.fromkeys(never, 0), **dict.fromkeys(common, 100)})
    batch = batch_of(ids, ratio=1 / 16, generator=gen(4), token_counts=counts)
    got = solution(batch)
    assert_selection(got, batch)
    assert got.sum(-1).eq(1).all()
    n_once, n_never, n_common = ((got & torch.isin(ids, torch.tensor(t))).sum().item()
                                 for t in (once, never, common))
    # Expected: 4000 * 4 / 8.8 = 1818 of each rare kind (standard deviation
    # 31) and 4000 * 0.8 / 8.8 = 364 common ones (18): a ratio of 10.
    assert 7 < (n_once + n_never) / max(n_common, 1) < 14, \
        f"rare {n_once + n_never} vs common {n_common} draws: expected a ratio near 10"
    assert 0.8 < n_never / max(n_once, 1) < 1.25, \
        f"tokens of count 0 drawn {n_never} times, of count 1 {n_once} times: count 0 weighs like count 1"


def test_draws_without_replacement_like_one_by_one(solution):
    # Counts 1, 4, 16, 100: weights 1, 1/2, 1/4, 1/10; 2 of the 4 per row.
    tokens = [5, 6, 7, 8]
    ids = rows_of(tokens, 6000, seed=5)
    batch = batch_of(ids, ratio=0.5, generator=gen(6), token_counts=counts_of({5: 1, 6: 4, 7: 16, 8: 100}))
    got = solution(batch)
    assert_selection(got, batch)
    assert got.sum(-1).eq(2).all()
    want = inclusion([1, 1 / 2, 1 / 4, 1 / 10], 2)  # 0.856, 0.646, 0.352, 0.146
    rates = [(got & (ids == t)).sum().item() / len(ids) for t in tokens]
    # Standard deviations are at most 0.0065: a margin of 0.03 is over four.
    assert all(abs(r - w) < 0.03 for r, w in zip(rates, want)), \
        (f"how often each token is drawn: {[round(r, 3) for r in rates]}, "
         f"expected {[round(w, 3) for w in want]}")


def test_equal_counts_give_every_position_the_same_chance(solution):
    ids = rows_of(list(range(5, 21)), 4000, seed=7)
    batch = batch_of(ids, ratio=0.25, generator=gen(8), token_counts=counts_of({}))
    got = solution(batch)
    rates = got[:, 1:-1].float().mean(0)  # 4 of 16: 0.25 each, standard deviation 0.007
    assert (rates - 0.25).abs().max() < 0.04, f"selection rate per position: {rates.tolist()}"


def test_the_seed_reproduces_the_mask(solution):
    ids = random_rows(16, 24, seed=9)
    counts = torch.randint(1, 5000, (VOCAB,), generator=gen(9))
    run = lambda seed: solution(batch_of(ids, ratio=0.15, generator=gen(seed), token_counts=counts))
    assert_the_seed_reproduces(run, other_seeds=[1])
