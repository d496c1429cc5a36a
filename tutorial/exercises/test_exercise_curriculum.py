"""Grader of exercise 4 (curriculum.py): random masking at progress 0, top-loss at 1, a linear share
between.

The grader checks properties, not one exact draw: a right solution passes
whatever way it draws its random tokens. Rates are measured over hundreds or
thousands of rows with fixed seeds, with margins of 4.5 standard deviations
or more. Every test first checks the preconditions (a bool tensor of the
input's shape, nothing outside `maskable`, exactly the budget).
"""

import torch

from grading import (PRECONDITION, assert_the_seed_reproduces, batch_of, budget_of, check_budget, check_rows,
                     fail, full_rows, gen, loss_scores, random_rows, ranked_logits, select, top_k)

EXERCISE = "curriculum"

# (maskable tokens n, ratio, progress): k = n * ratio exactly, and round(progress * k) differs from the
# floor (int) in three cases and from the ceiling in the other three.
SHARES = [(16, 0.5, 0.3), (16, 0.5, 0.7), (20, 0.25, 0.25), (20, 0.25, 0.75), (16, 0.75, 0.6),
          (16, 0.75, 0.4)]


def by_rank(got, ids, logits):
    """got with each row reordered by loss, highest first: column r is the token ranked r (from 0)."""
    order = loss_scores(ids, logits).masked_fill(ids < 5, float("-inf")).argsort(dim=-1, descending=True,
                                                                                   stable=True)
    return got.gather(-1, order)


def shares(solution, n, ratio, progress, n_rows=400):
    """The solution's selection rate of the token ranked r by loss, for each r < n, over n_rows rows."""
    seed = int(progress * 100) + n
    ids = full_rows(n_rows, n, seed)
    logits = ranked_logits(ids, seed)
    batch = batch_of(ids, logits, ratio=ratio, generator=gen(seed), progress=progress)
    k = budget_of(batch, seed)
    got = select(solution, batch, k)
    return by_rank(got, ids, logits).float().mean(0)[:n], int(k[0])


def test_each_sequence_gets_exactly_its_budget(solution):
    ids = random_rows(32, 24, seed=1)
    logits = ranked_logits(ids, 1)
    for progress in (0.0, 0.5, 1.0):
        batch = batch_of(ids, logits, ratio=0.15, generator=gen(2), progress=progress)
        got = select(solution, batch)
        check_budget(got, batch, budget_of(batch, 2), prefix=f"at progress {progress}, ")


def test_progress_0_does_not_question_the_model(solution):
    ids = random_rows(32, 24, seed=1)
    for seed in range(3):
        batch = batch_of(ids, ranked_logits(ids, 1), ratio=0.15, generator=gen(seed), progress=0.0)
        select(solution, batch, budget_of(batch, seed))
        if batch.calls:
            fail("at progress 0 no token is chosen by its score: do not run the model "
                 "(batch.logits() or batch.scores() was called)")


def test_progress_0_is_uniform_over_the_maskable_tokens(solution):
    # 4000 rows of 16 maskable tokens, k = 4: each token is selected with
    # probability 1/4 (standard deviation 0.0068), each pair with 1/20 (0.0034).
    ids = full_rows(4000, 16, seed=3)
    batch = batch_of(ids, ranked_logits(ids, 3), ratio=0.25, generator=gen(4), progress=0.0)
    got = select(solution, batch, budget_of(batch, 4))[:, 1:-1].float()
    rates = got.mean(0)
    worst = (rates - 0.25).abs().argmax().item()
    if abs(rates[worst] - 0.25) > 0.031:
        fail(f"at progress 0 every maskable token is equally likely: token {worst + 1} of each row is "
             f"selected in {rates[worst]:.3f} of the rows, expected 0.25")
    pairs = (got.T @ got) / len(got)
    off = (pairs - 0.05).abs().masked_fill(torch.eye(16, dtype=torch.bool), 0.0)
    i, j = divmod(off.argmax().item(), 16)
    if off[i, j] > 0.0155:
        fail(f"at progress 0 every set of k tokens is equally likely: tokens {i + 1} and {j + 1} of a row "
             f"are selected together in {pairs[i, j]:.3f} of the rows, expected 0.05")


def test_progress_1_is_the_top_loss_tokens(solution):
    ids = random_rows(32, 24, seed=2)
    logits = ranked_logits(ids, 2)
    batch = batch_of(ids, logits, ratio=0.15, generator=gen(3), progress=1.0)
    k = budget_of(batch, 3)
    got = select(solution, batch, k)
    check_rows(got, top_k(loss_scores(ids, logits), batch.maskable, k),
               "at progress 1 the budget's k tokens are the top-loss tokens")


def check_share(rates, k, progress, prefix=PRECONDITION):
    """The top round(progress * k) tokens by loss, and no more, are selected in every row."""
    want = round(progress * k)
    taken = int(rates.eq(1.0).int().cumprod(0).sum())  # the leading ranks selected in every row
    if taken != want:
        fail(f"{prefix}the informative share is round(progress * k): at progress {progress} with k = {k}, "
             f"round({progress * k:g}) = {want} top-loss tokens, but the top {taken} are selected in "
             f"every row (round, not floor, ceil or int)")


def test_the_informative_share_is_round_progress_times_budget(solution):
    for n, ratio, progress in SHARES:
        rates, k = shares(solution, n, ratio, progress)
        check_share(rates, k, progress, prefix="")


def test_the_rest_of_the_budget_is_uniformly_random(solution):
    for n, ratio, progress in SHARES:
        rates, k = shares(solution, n, ratio, progress)
        check_share(rates, k, progress)
        top = round(progress * k)
        rest = (k - top) / (n - top)  # each other token's chance; standard deviation <= 0.025 on 400 rows
        margin = 4.5 * (rest * (1 - rest) / 400) ** 0.5
        off = [r for r in range(top, n) if abs(rates[r] - rest) > margin]
        if off:
            fail(f"the rest of the budget is uniformly random among the other tokens: at progress {progress} "
                 f"with k = {k}, the token ranked {off[0] + 1} by loss is selected in {rates[off[0]]:.3f} of "
                 f"the rows, expected {rest:.3f} for each of ranks {top + 1} to {n}")


def test_the_informative_share_rises_with_progress(solution):
    ids = full_rows(200, 20, seed=5)
    logits = ranked_logits(ids, 5)
    top = top_k(loss_scores(ids, logits), ids >= 5, torch.full((200,), 10))
    mean_top = {}
    for progress in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        batch = batch_of(ids, logits, ratio=0.5, generator=gen(6), progress=progress)
        got = select(solution, batch, budget_of(batch, 6))
        mean_top[progress] = round((got & top).sum(-1).float().mean().item(), 2)
    values = list(mean_top.values())
    if not all(a < b for a, b in zip(values, values[1:])) or values[-1] != 10:
        fail(f"the informative share rises with progress, to all k = 10 at progress 1: top-loss tokens "
             f"selected per row on average {mean_top}")


def test_the_seed_reproduces_the_mask(solution):
    ids = full_rows(8, 16, seed=5)
    logits = ranked_logits(ids, 5)
    assert_the_seed_reproduces(lambda seed: select(solution, batch_of(ids, logits, ratio=0.5,
                                                                      generator=gen(seed), progress=0.5)),
                               other_seeds=[1])
