"""Grader of exercise 2 (whole_word.py): whole words, highest max-piece loss first, up to the budget.

One test per rule of the starter's docstring, in its order. The word rules
(what a word is, never split, the budget) are checked without assuming any
order of the words, so a wrong order is reported as the order; every later
test checks them first, as preconditions.
"""

import torch

from grading import (CLS, CONTINUATION, FIRST_PIECE, PAD, SEP, PRECONDITION, assert_follows_the_rule,
                     assert_the_seed_reproduces, batch_of, budget_of, check_rows, fail, gen,
                     logits_with_loss, loss_scores, random_rows, ranked_logits, select, select_on_random_rows,
                     tokens, top_k)

EXERCISE = "whole_word"
A, B, C, D = 5, 6, 7, 8        # tokens that start a word
X, Y = FIRST_PIECE, FIRST_PIECE + 1  # continuation pieces ("##x")


def words_of(ids, maskable):
    """The words of one row as lists of positions; a piece after a non-maskable position starts a word."""
    words = []
    for i in range(len(ids)):
        if not maskable[i]:
            continue
        if CONTINUATION[ids[i]] and i > 0 and maskable[i - 1]:
            words[-1].append(i)
        else:
            words.append([i])
    return words


def expected(batch, scores, k, aggregate=max):
    """Words by aggregate piece score (highest first, earlier word on ties), taken while fewer than k
    tokens."""
    selected = torch.zeros(batch.input_ids.shape, dtype=torch.bool)
    for b in range(len(selected)):
        words = words_of(batch.input_ids[b], batch.maskable[b])
        taken = 0
        for word in sorted(words, key=lambda w: (-aggregate([scores[b, i].item() for i in w]), w[0])):
            if taken >= k[b]:
                break
            selected[b, word] = True
            taken += len(word)
    return selected


def mean(values):
    return sum(values) / len(values)


def check_no_split(got, batch, prefix=PRECONDITION):
    """Every word of every row is selected whole or not at all."""
    for b in range(len(got)):
        for word in words_of(batch.input_ids[b], batch.maskable[b]):
            if 0 < got[b, word].sum() < len(word):
                fail(f"{prefix}never split a word: row {b} selects {[i for i in word if got[b, i]]} "
                     f"of the word at positions {word}")


def check_word_budget(got, batch, k, prefix=PRECONDITION):
    """At least k tokens, and more only by the pieces of the last word taken.

    Whatever order a solution takes the words in, without its last word a row
    has fewer than k tokens, so without its longest word it has too: this
    check holds for every order, and a wrong order is left to its own test.
    """
    for b in range(len(got)):
        count, budget_ = int(got[b].sum()), int(k[b])
        longest = max((len(w) for w in words_of(batch.input_ids[b], batch.maskable[b]) if got[b, w].all()),
                      default=0)
        if count < budget_ or (count > budget_ and count - longest >= budget_):
            fail(f"{prefix}the budget: row {b} selects {tokens(count)} for a budget of {budget_} "
                 f"(masking.budget): take words while fewer than k tokens are taken, so at least k, and more "
                 f"only by the pieces of the last word taken")


def select_words(solution, batch, k):
    """The solution's selection, after the preconditions: valid, no word split, the budget rule."""
    got = select(solution, batch)
    check_no_split(got, batch)
    check_word_budget(got, batch, k)
    return got


def test_a_word_is_never_split(solution):
    batch, got, _, _ = select_on_random_rows(solution, 64, 32, seed=4, ratio=0.15, pieces=0.5, mask_seed=5)
    check_no_split(got, batch, prefix="")


def test_the_budget_is_reached_and_only_the_last_word_overshoots(solution):
    batch, got, _, k = select_on_random_rows(solution, 64, 32, seed=4, ratio=0.15, pieces=0.5, mask_seed=5)
    check_no_split(got, batch)
    check_word_budget(got, batch, k, prefix="")


def check_order(solution, prefix=""):
    """Rows of one-token words: the budget's k highest scores."""
    ids = random_rows(16, 24, seed=7)
    logits = ranked_logits(ids, 7)
    batch = batch_of(ids, logits, ratio=0.3, generator=gen(8))
    k = budget_of(batch, 8)
    got = select_words(solution, batch, k)
    check_rows(got, top_k(loss_scores(ids, logits), batch.maskable, k),
               f"{prefix}take words from the highest score down (rows of one-token words)")


def test_words_are_taken_from_the_highest_score_down(solution):
    check_order(solution)


def test_equal_scores_the_earlier_word_first(solution):
    # Identical tokens with identical logits tie exactly. Row 0: the words
    # "a ##x", "a ##x" (both scored by their ##x) and "a"; row 1: five equal
    # one-token words. 5 maskable tokens at ratio 0.4: k = 2 in both rows.
    ids = torch.tensor([[CLS, A, X, A, X, A, SEP], [CLS, B, B, B, B, B, SEP]])
    badness = torch.tensor([[0, 0, 3, 0, 3, 0, 0], [0, 1, 1, 1, 1, 1, 0]])
    logits = logits_with_loss(ids, badness)
    batch = batch_of(ids, logits, ratio=0.4)
    k = budget_of(batch, 0)
    want = expected(batch, loss_scores(ids, logits), k)
    check_order(solution, prefix=PRECONDITION)
    assert want.nonzero()[:, 1].tolist() == [1, 2, 1, 2], "grader: the earlier words win"
    got = select_words(solution, batch, k)
    check_rows(got, want, "equal scores: the earlier word first")


def test_a_piece_after_a_non_maskable_position_starts_a_word(solution):
    # Row 0, a block cut mid-word: "[CLS] ##x a ##y ...": ##x is the most
    # unlearned token and is masked alone; [CLS] never joins a word.
    # Row 1, a sentence pair: "[CLS] a [SEP] ##x ...": "a" is the most
    # unlearned token; ##x after [SEP] is not part of its word.
    ids = torch.tensor([[CLS, X, A, Y, B, C, D, SEP, PAD, PAD],
                        [CLS, A, SEP, X, B, C, D, A, SEP, PAD],
                        [CLS, SEP, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD]])  # nothing to mask
    badness = torch.tensor([[0, 9, 1, 1, 2, 3, 4, 0, 0, 0], [0, 9, 0, 0, 1, 2, 3, 4, 0, 0], [0] * 10])
    batch = batch_of(ids, logits_with_loss(ids, badness), ratio=1 / 6)  # k = 1 of 6
    check_order(solution, prefix=PRECONDITION)
    got = select(solution, batch)
    check_rows(got, torch.tensor([[False, True] + [False] * 8] * 2 + [[False] * 10]),
               "a piece right after a non-maskable position starts a word of its own (a word never "
               "contains a special token)")


def test_a_word_is_scored_by_its_least_learned_piece(solution):
    # A = a ##x ##x whose second piece is unlearned, B one fairly unlearned
    # token, C three middling pieces, D a learned token. k = 4 of 8 maskable tokens.
    ids = torch.tensor([[CLS, A, X, X, B, C, Y, Y, D, SEP]])
    badness = torch.tensor([[0, 0, 9, 0, 5, 4, 4, 4, 0, 0]])
    logits = logits_with_loss(ids, badness)
    batch = batch_of(ids, logits, ratio=0.5)
    scores, k = loss_scores(ids, logits), torch.tensor([4])
    check_order(solution, prefix=PRECONDITION)
    want = expected(batch, scores, k)
    # Sanity of the grader: the max takes A, then B; the first piece and the
    # mean would take B, then C; the sum C, then A.
    assert want[0].nonzero().flatten().tolist() == [1, 2, 3, 4], "grader: the max takes A, then B"
    assert not any(torch.equal(want, expected(batch, scores, k, f)) for f in (mean, sum, lambda v: v[0])), \
        "grader: the other scores take other words"
    got = select_words(solution, batch, budget_of(batch, 0))
    check_rows(got, want, "a word's score is the MAXIMUM of its pieces' loss scores (not the first piece's, "
                          "the mean or the sum)")


def test_selects_the_right_words_on_random_rows(solution):
    check_order(solution, prefix=PRECONDITION)
    assert_follows_the_rule(solution, expected, "the highest-scoring words up to the budget", pieces=0.4,
                            check=lambda got, batch, k: (check_no_split(got, batch),
                                                         check_word_budget(got, batch, k)))


def test_the_seed_reproduces_the_mask(solution):
    ids = random_rows(16, 24, seed=6, pieces=0.3)
    logits = ranked_logits(ids, 6)
    assert_the_seed_reproduces(lambda seed: select(solution, batch_of(ids, logits, ratio=0.15,
                                                                      generator=gen(seed))))
