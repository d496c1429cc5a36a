"""Grader of exercise 5 (frequency.py): exactly the budget, drawn without replacement with weights
count ** -0.5.

The statistical tests draw thousands of rows with fixed seeds and allow
margins of four or more standard deviations: a right solution passes whatever
its own way of drawing, a wrong weighting fails by far. One test per rule of
the starter's docstring, in its order; every test first checks the
preconditions (a bool tensor of the input's shape, nothing outside
`maskable`, exactly the budget). Tokens of count 0 appear only in the test of
count 0, so that a mistake there is reported there alone.
"""

import torch

from grading import (CLS, PRECONDITION, SEP, VOCAB, assert_the_seed_reproduces, batch_of, budget_of,
                     check_budget, fail, gen, logits_with_loss, random_rows, select)

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


def test_each_sequence_gets_exactly_its_budget(solution):
    ids = random_rows(64, 24, seed=1)
    counts = torch.randint(1, 5000, (VOCAB,), generator=gen(1))
    batch = batch_of(ids, ratio=0.15, generator=gen(2), token_counts=counts)
    check_budget(select(solution, batch), batch, budget_of(batch, 2), prefix="")


def test_does_not_question_the_model(solution):
    ids = random_rows(64, 24, seed=1)
    counts = torch.randint(1, 5000, (VOCAB,), generator=gen(1))
    batch = batch_of(ids, logits_with_loss(ids, torch.zeros(ids.shape)), ratio=0.15, generator=gen(2),
                     token_counts=counts)
    select(solution, batch, budget_of(batch, 2))
    if batch.calls:
        fail("frequency weighting needs no model: do not question it (batch.logits() or batch.scores() "
             "was called)")


def drawn(got, ids, tokens):
    """How many of the selected positions hold one of `tokens`."""
    return int((got & torch.isin(ids, torch.tensor(tokens))).sum())


def check_ratio(solution, prefix=""):
    """Per row 8 rare tokens (count 1) and 8 common ones (count 100); the budget is 1 token. Expected:
    4000 * 8 / 8.8 = 3636 rare draws and 364 common ones (standard deviation 18): a ratio of 10."""
    rare, common = list(range(5, 13)), list(range(13, 21))
    ids = rows_of(rare + common, 4000, seed=3)
    batch = batch_of(ids, ratio=1 / 16, generator=gen(4),
                     token_counts=counts_of({**dict.fromkeys(rare, 1), **dict.fromkeys(common, 100)}))
    got = select(solution, batch, budget_of(batch, 4))
    n_rare, n_common = drawn(got, ids, rare), drawn(got, ids, common)
    if not 7 < n_rare / max(n_common, 1) < 14:
        fail(f"{prefix}a token 100 times as frequent is about 10 times less likely to be drawn (weights "
             f"count ** -0.5, each draw in proportion to them): {n_rare} draws of tokens of count 1 against "
             f"{n_common} of count 100, expected a ratio near 10")


def test_a_hundred_times_more_frequent_is_ten_times_less_likely(solution):
    check_ratio(solution)


def test_a_token_of_count_0_weighs_like_count_1(solution):
    # Per row 4 tokens never seen (count 0), 4 seen once, 8 of count 100; the
    # budget is 1 token: expected 4000 * 4 / 8.8 = 1818 draws of each rare
    # kind (standard deviation 31).
    once, never, common = list(range(5, 9)), list(range(9, 13)), list(range(13, 21))
    ids = rows_of(once + never + common, 4000, seed=3)
    counts = counts_of({**dict.fromkeys(once, 1), **dict.fromkeys(never, 0), **dict.fromkeys(common, 100)})
    batch = batch_of(ids, ratio=1 / 16, generator=gen(4), token_counts=counts)
    got = select(solution, batch, budget_of(batch, 4))
    n_once, n_never = drawn(got, ids, once), drawn(got, ids, never)
    if not 0.8 < n_never / max(n_once, 1) < 1.25:
        fail(f"a token of count 0 weighs like count 1: tokens of count 0 drawn {n_never} times, of count 1 "
             f"{n_once} times, expected about 1818 each")


def test_draws_without_replacement_like_one_by_one(solution):
    # Counts 1, 4, 16, 100: weights 1, 1/2, 1/4, 1/10; 2 of the 4 per row.
    check_ratio(solution, prefix=PRECONDITION)
    tokens = [5, 6, 7, 8]
    ids = rows_of(tokens, 6000, seed=5)
    batch = batch_of(ids, ratio=0.5, generator=gen(6), token_counts=counts_of({5: 1, 6: 4, 7: 16, 8: 100}))
    got = select(solution, batch, budget_of(batch, 6))
    want = inclusion([1, 1 / 2, 1 / 4, 1 / 10], 2)  # 0.856, 0.646, 0.352, 0.146
    rates = [(got & (ids == t)).sum().item() / len(ids) for t in tokens]
    # Standard deviations are at most 0.0065: a margin of 0.03 is over four.
    if not all(abs(r - w) < 0.03 for r, w in zip(rates, want)):
        fail(f"draw without replacement like one by one, each time in proportion to the weights left: "
             f"counts 1, 4, 16, 100 drawn 2 of 4 at rates {[round(r, 3) for r in rates]}, "
             f"expected {[round(w, 3) for w in want]}")


def test_equal_counts_give_every_position_the_same_chance(solution):
    ids = rows_of(list(range(5, 21)), 4000, seed=7)
    batch = batch_of(ids, ratio=0.25, generator=gen(8), token_counts=counts_of({}))
    got = select(solution, batch, budget_of(batch, 8))
    rates = got[:, 1:-1].float().mean(0)  # 4 of 16: 0.25 each, standard deviation 0.007
    worst = (rates - 0.25).abs().argmax().item()
    if abs(rates[worst] - 0.25) > 0.04:
        fail(f"with equal counts every position has the same chance: position {worst + 1} of each row is "
             f"selected in {rates[worst]:.3f} of the rows, expected 0.25")


def test_the_seed_reproduces_the_mask(solution):
    ids = random_rows(16, 24, seed=9)
    counts = torch.randint(1, 5000, (VOCAB,), generator=gen(9))
    run = lambda seed: select(solution, batch_of(ids, ratio=0.15, generator=gen(seed), token_counts=counts))
    assert_the_seed_reproduces(run, other_seeds=[1])
