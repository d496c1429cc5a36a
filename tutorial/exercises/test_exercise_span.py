"""Grader of exercise 3 (span.py): ceil(k/3) top-scoring seeds, each grown by a neighbour on each side,
within k.

One test per rule of the starter's docstring, in its order. Every test
first checks the selection's preconditions (a bool tensor of the input's
shape, nothing outside `maskable`, never more than the budget k).
"""

import torch

from grading import (CLS, PAD, PRECONDITION, SEP, assert_follows_the_rule, assert_the_seed_reproduces,
                     batch_of, budget_of, check_rows, check_selection, excerpt, fail, gen,
                     logits_with_loss, loss_scores, positions, random_rows, ranked_logits, select,
                     select_on_random_rows, tokens)

EXERCISE = "span"


def by_score(positions_, scores):
    return sorted(positions_, key=lambda i: (-scores[i].item(), i))


def seeds_of(batch, scores, k, b):
    """The ceil(k / 3) highest-scoring maskable positions of row b (ties: the lower position)."""
    maskable = [i for i in range(batch.input_ids.shape[1]) if batch.maskable[b, i]]
    return by_score(maskable, scores[b])[:(int(k[b]) + 2) // 3]


def expected(batch, scores, k):
    """The rule, one row at a time: seeds, their maskable neighbours, the best neighbours up to k."""
    selected = torch.zeros(batch.input_ids.shape, dtype=torch.bool)
    length = batch.input_ids.shape[1]
    for b in range(len(selected)):
        seeds = seeds_of(batch, scores, k, b)
        neighbours = {j for i in seeds for j in (i - 1, i + 1)
                      if 0 <= j < length and batch.maskable[b, j] and j not in seeds}
        selected[b, seeds + by_score(neighbours, scores[b])[:int(k[b]) - len(seeds)]] = True
    return selected


def check_at_most_the_budget(got, batch, k, prefix=PRECONDITION):
    over = (got.sum(-1) > k).nonzero().flatten().tolist()
    if over:
        b = over[0]
        fail(f"{prefix}never more than the budget: row {b} selects {tokens(got[b].sum())} "
             f"{excerpt(positions(got[b]))}, its budget is {int(k[b])} ({len(over)} of {len(got)} rows over)")


def select_spans(solution, batch, k):
    got = select(solution, batch)
    check_at_most_the_budget(got, batch, k)
    return got


def test_never_selects_a_non_maskable_position(solution):
    # Random rows: seeds next to [CLS], [SEP] and padding are common.
    ids = random_rows(64, 32, seed=3)
    batch = batch_of(ids, ranked_logits(ids, 3), ratio=0.3)
    check_selection(solution(batch), batch, prefix="")


def test_a_seed_next_to_a_special_token_grows_inwards_only(solution):
    # 8 maskable tokens, k = 3: one seed and at most two neighbours. Row 0's
    # seed is next to [SEP], row 1's next to [CLS]: each has one neighbour.
    ids = torch.tensor([[CLS, 5, 6, 7, 8, 9, 10, 11, 12, SEP, PAD]] * 2)
    badness = torch.tensor([[0, 0, 1, 2, 8, 5, 3, 4, 9, 0, 0], [0, 9, 1, 2, 8, 5, 3, 4, 0, 0, 0]])
    batch = batch_of(ids, logits_with_loss(ids, badness), ratio=0.375)
    got = select_spans(solution, batch, budget_of(batch, 0))
    check_rows(got, torch.tensor([[i in (7, 8) for i in range(11)], [i in (1, 2) for i in range(11)]]),
               "a seed next to [SEP] or [CLS] grows inwards only (fewer than k tokens then)")


def test_a_span_never_wraps_around_the_row(solution):
    # No special token at all: the top seed sits at the last position, the
    # second best token at the first. k = 3: one seed, and only one neighbour.
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]])
    badness = torch.tensor([[10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11]])
    batch = batch_of(ids, logits_with_loss(ids, badness), ratio=0.25)
    got = select_spans(solution, batch, budget_of(batch, 0))
    check_rows(got, torch.tensor([[i in (10, 11) for i in range(12)]]),
               "a span never wraps around: the last position's neighbour is not position 0")


def test_never_more_than_the_budget(solution):
    batch, got, _, k = select_on_random_rows(solution, 64, 32, seed=4, ratio=0.3, mask_seed=5)
    check_at_most_the_budget(got, batch, k, prefix="")


def check_seeds(got, batch, k, prefix=PRECONDITION):
    """Every seed selected: the ceil(k / 3) top-loss tokens of each row."""
    scores = loss_scores(batch.input_ids, batch.logits())
    for b in range(len(got)):
        seeds = seeds_of(batch, scores, k, b)
        missing = [i for i in seeds if not got[b, i]]
        if missing:
            fail(f"{prefix}every seed is selected, the ceil(k / 3) = {len(seeds)} top-loss tokens of a row: "
                 f"row {b} (k = {int(k[b])}) misses {excerpt(missing, 4)} of its seeds {excerpt(seeds)}")


def check_next_to_seeds(got, batch, k, prefix=PRECONDITION):
    """Every selected token is a seed or right next to one."""
    scores = loss_scores(batch.input_ids, batch.logits())
    for b in range(len(got)):
        seeds = seeds_of(batch, scores, k, b)
        lonely = [i for i in positions(got[b]) if not {i - 1, i, i + 1} & set(seeds)]
        if lonely:
            fail(f"{prefix}every selected token is a seed (the ceil(k / 3) top-loss tokens) or next to one: "
                 f"row {b} selects {excerpt(lonely, 4)}, its seeds are {excerpt(seeds)}")


def check_spans(got, batch, k):
    """The preconditions of the tests of which neighbours: the budget, the seeds, nothing else."""
    check_at_most_the_budget(got, batch, k)
    check_seeds(got, batch, k)
    check_next_to_seeds(got, batch, k)


def test_every_seed_is_selected(solution):
    batch, got, _, k = select_on_random_rows(solution, 64, 32, seed=4, ratio=0.3, mask_seed=5,
                                             check=check_at_most_the_budget)
    check_seeds(got, batch, k, prefix="")


def test_every_selected_token_is_a_seed_or_next_to_one(solution):
    def preconditions(got, batch, k):
        check_at_most_the_budget(got, batch, k)
        check_seeds(got, batch, k)

    batch, got, _, k = select_on_random_rows(solution, 64, 32, seed=4, ratio=0.3, mask_seed=5,
                                             check=preconditions)
    check_next_to_seeds(got, batch, k, prefix="")


def test_the_rest_of_the_budget_goes_to_the_highest_scoring_neighbours(solution):
    # k = 6 of 12: seeds 3 and 8 (the top two), neighbours 2, 4, 7, 9 of which
    # 4 and 7 score highest. Taking neighbours by position would take 2 and 4.
    ids = torch.tensor([[CLS, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, SEP]])
    badness = torch.tensor([[0, 6, 1, 10, 5, 0, 0, 4, 9, 2, 0, 0, 0, 0]])
    batch = batch_of(ids, logits_with_loss(ids, badness), ratio=1 / 3)  # k = 4: 2 seeds, 2 neighbours
    got = select(solution, batch)
    check_spans(got, batch, budget_of(batch, 0))
    check_rows(got, torch.tensor([[i in (3, 4, 7, 8) for i in range(14)]]),
               "the rest of the budget goes to the neighbours with the highest loss scores")


def test_equal_scores_go_to_the_lower_position(solution):
    # Identical tokens with identical logits tie exactly. Row 0: twelve equal
    # tokens, k = 6: seeds 1 and 2, and 3 is their only neighbour. Row 1: two
    # tied seeds (3, 6) among 8 tokens, k = 4, four tied neighbours (2, 4, 5, 7).
    ids = torch.tensor([[CLS] + [5] * 12 + [SEP], [CLS, 5, 5, 6, 5, 5, 6, 5, 5, SEP, PAD, PAD, PAD, PAD]])
    badness = torch.tensor([[0] + [1] * 12 + [0], [0, 1, 1, 9, 1, 1, 9, 1, 1, 0, 0, 0, 0, 0]])
    batch = batch_of(ids, logits_with_loss(ids, badness), ratio=0.5)
    # Which tokens are seeds depends on the ties here: the seeds are checked on random rows first.
    select_on_random_rows(solution, 16, 24, seed=7, ratio=0.3, check=check_spans)
    got = select_spans(solution, batch, budget_of(batch, 0))
    want = torch.tensor([[i in (1, 2, 3) for i in range(14)], [i in (2, 3, 4, 6) for i in range(14)]])
    check_rows(got, want,
               "equal scores go to the lower position (seeds and neighbours alike)")


def test_selects_the_right_spans_on_random_rows(solution):
    assert_follows_the_rule(solution, expected, "the seeds and their best neighbours up to the budget",
                            check=check_spans)


def test_the_seed_reproduces_the_mask(solution):
    ids = random_rows(16, 24, seed=6)
    logits = ranked_logits(ids, 6)
    assert_the_seed_reproduces(lambda seed: select(solution, batch_of(ids, logits, ratio=0.15,
                                                                      generator=gen(seed))))
