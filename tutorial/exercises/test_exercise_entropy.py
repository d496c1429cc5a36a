"""Grader of exercise 1 (entropy.py): the budget of tokens with the most uncertain predictions.

One test per rule of the starter's docstring, in its order. Every test first
checks the selection's preconditions (a bool tensor of the input's shape,
nothing outside `maskable`, exactly the budget); the tests of -inf and bf16
logits first grade the same rows with ordinary float32 logits, so that a
failure there is about the -inf or the bf16 alone.
"""

import torch

from grading import (CLS, PAD, PRECONDITION, SEP, VOCAB, assert_the_seed_reproduces, batch_of, budget_of,
                     check_budget, check_rows, check_selection, check_type, gen, loss_scores, random_rows, select,
                     top_k)

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
    return top_k(entropies(logits), batch.maskable, budget_of(batch, seed))


def test_never_selects_a_non_maskable_position(solution):
    ids = torch.tensor([[CLS, 5, 6, 7, 8, 9, 10, SEP],
                        [CLS, 11, 12, SEP, PAD, PAD, PAD, PAD],
                        [CLS, SEP, PAD, PAD, PAD, PAD, PAD, PAD]])  # nothing to mask
    logits = spread_logits(ids, 0)
    logits[~batch_of(ids).maskable] = 0.0  # special tokens get the highest entropy of all
    batch = batch_of(ids, logits, ratio=0.5)
    check_selection(solution(batch), batch, prefix="")


def test_each_sequence_gets_exactly_its_budget(solution):
    ids = random_rows(32, 24, seed=2)
    batch = batch_of(ids, spread_logits(ids, 2), ratio=0.15, generator=gen(3))
    check_budget(select(solution, batch), batch, budget_of(batch, 3), prefix="")


def check_highest_entropies(solution, prefix=""):
    """On rows without ties, the solution selects the budget of highest entropies."""
    ids = random_rows(8, 16, seed=1)
    logits = spread_logits(ids, 1)
    batch = batch_of(ids, logits, ratio=0.25, generator=gen(7))
    want = expected(batch, logits, 7)
    # Sanity of the grader: the loss score would pick other tokens.
    assert not torch.equal(want, top_k(loss_scores(ids, logits), batch.maskable, want.sum(-1))), \
        "grader: the loss must pick other tokens here"
    got = select(solution, batch, budget_of(batch, 7))
    check_rows(got, want, f"{prefix}not the highest-entropy tokens (H_i = -sum_v p_i(v) log p_i(v) of the "
                          f"whole distribution, not the loss of the shown token)")


def test_selects_the_highest_entropy_tokens(solution):
    check_highest_entropies(solution)


def test_equal_entropies_go_to_the_lower_position(solution):
    # Three kinds of positions: belief spread over 4, 8 or 16 tokens, each
    # kind with identical logits (exactly equal entropies). The budget falls
    # inside a tied group: the lower positions of the group must win.
    g = gen(10)
    ids = torch.full((6, 20), 5)
    ids[:, 0], ids[:, -1] = CLS, SEP
    kinds = torch.randint(0, 3, (6, 20), generator=g)
    logits = torch.full((6, 20, VOCAB), -30.0)
    for kind, m in enumerate((4, 8, 16)):
        logits[kinds == kind] = torch.where(torch.arange(VOCAB) < m, 0.0, -30.0)
    batch = batch_of(ids, logits, ratio=0.5, generator=gen(11))
    check_highest_entropies(solution, prefix=PRECONDITION)
    got = select(solution, batch, budget_of(batch, 11))
    check_rows(got, expected(batch, logits, 11), "equal entropies go to the lower position")


def test_logits_at_minus_infinity_count_zero_not_nan(solution):
    ids = random_rows(8, 16, seed=4)
    finite = spread_logits(ids, 4, floor=-30.0)
    control = batch_of(ids, finite, ratio=0.25, generator=gen(5))
    check_rows(select(solution, control, budget_of(control, 5)), expected(control, finite, 5),
               "precondition: the same rows with finite logits")
    logits = spread_logits(ids, 4, floor=float("-inf"))  # the same belief, with p exactly 0 elsewhere
    batch = batch_of(ids, logits, ratio=0.25, generator=gen(5))
    got = solution(batch)
    check_type(got, batch)  # the rest is this test's: NaN entropies may select too few, or special tokens
    check_rows(got, expected(batch, logits, 5),
               "a logit at -inf has p = 0 and p log p = 0, not NaN (0 * log 0): it must not poison the sum")


def test_bfloat16_logits_are_ranked_in_float32(solution):
    # Every position raises one token by a different bf16-exact logit between
    # 0.25 and 1.9: all entropies lie within 0.15 of each other, closer than
    # bf16 can tell apart (steps of 0.016 near 3.6), but float32 ranks them.
    n_rows, length = 8, 28
    ids = torch.full((n_rows, length), 5)
    ids[:, 0], ids[:, -1] = CLS, SEP
    g = gen(6)
    raised = torch.stack([0.25 + torch.randperm(length, generator=g) / 16 for _ in range(n_rows)])
    logits = torch.zeros(n_rows, length, VOCAB)
    logits[..., 7] = raised
    control = batch_of(ids, logits, ratio=0.25, generator=gen(8))
    check_rows(select(solution, control, budget_of(control, 8)), expected(control, logits, 8),
               "precondition: the same logits in float32")
    batch = batch_of(ids, logits.bfloat16(), ratio=0.25, generator=gen(8))
    got = solution(batch)
    check_type(got, batch)
    check_rows(got, expected(batch, logits, 8),
               "compute the entropy in float32 or wider: bfloat16 cannot rank entropies this close")


def test_the_seed_reproduces_the_mask(solution):
    ids = random_rows(16, 24, seed=9)
    logits = spread_logits(ids, 9)
    # The only chance here is the budget's rounding: other seeds round other rows up.
    assert_the_seed_reproduces(lambda seed: select(solution, batch_of(ids, logits, ratio=0.15,
                                                                      generator=gen(seed))))
