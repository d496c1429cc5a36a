"""Grader of exercise 2 (whole_word.py): whole words, highest max-piece loss first, up to the budget."""

import torch

from grading import (CLS, CONTINUATION, FIRST_PIECE, PAD, SEP, assert_follows_the_rule, assert_selection,
                     assert_the_seed_reproduces, batch_of, gen, logits_with_loss, loss_scores, random_rows,
                     ranked_logits, rows, select_on_random_rows)

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


def test_a_word_is_scored_by_its_least_learned_piece(solution):
    # A = a ##x ##x with one unlearned piece, B one fairly unlearned token,
    # C three middling pieces, D a learned token. k = 4 of 8 maskable tokens.
    ids = torch.tensor([[CLS, A, X, X, B, C, Y, Y, D, SEP]])
    badness = torch.tensor([[0, 9, 0, 0, 5, 4, 4, 4, 0, 0]])
    logits = logits_with_loss(ids, badness)
    batch = batch_of(ids, logits, ratio=0.5)
    scores, k = loss_scores(ids, logits), torch.tensor([4])
    want = expected(batch, scores, k)
    assert rows(want) == [[1, 2, 3, 4]]  # A, then B
    assert not torch.equal(want, expected(batch, scores, k, mean))  # the mean would take B, then C
    assert not torch.equal(want, expected(batch, scores, k, sum))  # the sum C, then A
    got = solution(batch)
    assert_selection(got, batch)
    assert rows(got) == rows(want), "a word's score is the max of its pieces' loss scores"


def test_a_piece_after_a_special_token_is_a_word_of_its_own(solution):
    # A block cut mid-word: "[CLS] ##x a ##y ..." The first ##x is the most
    # unlearned token; it is masked alone, and [CLS] never joins a word.
    ids = torch.tensor([[CLS, X, A, Y, B, C, D, SEP, PAD, PAD],
                        [CLS, SEP, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD]])  # nothing to mask
    badness = torch.tensor([[0, 9, 1, 1, 2, 3, 4, 0, 0, 0], [0] * 10])
    batch = batch_of(ids, logits_with_loss(ids, badness), ratio=1 / 6)  # k = 1 of 6
    got = solution(batch)
    assert_selection(got, batch)
    assert rows(got) == [[1], []]


def test_selects_the_right_words_up_to_the_budget(solution):
    assert_follows_the_rule(solution, expected, "not the highest-scoring words up to the budget", pieces=0.4)


def test_words_are_never_split_and_the_budget_is_kept(solution):
    batch, got, scores, k = select_on_random_rows(solution, 64, 32, seed=4, ratio=0.15, pieces=0.5,
                                                  mask_seed=5)
    for b in range(len(got)):
        words = words_of(batch.input_ids[b], batch.maskable[b])
        taken = [w for w in words if got[b, w].any()]
        split = [w for w in taken if not got[b, w].all()]
        assert not split, f"row {b}: words split (positions {split})"
        count = int(got[b].sum())
        assert count >= k[b], f"row {b}: {count} tokens, below the budget {int(k[b])}"
        # The last word taken is the lowest-ranked one; without it, the count is short of k.
        last = max(taken, key=lambda w: (-max(scores[b, i].item() for i in w), w[0]), default=[])
        assert count - len(last) < k[b] or count == 0, \
            f"row {b}: {count} tokens for a budget of {int(k[b])}: only the last word may overshoot"


def test_the_seed_reproduces_the_mask(solution):
    ids = random_rows(16, 24, seed=6, pieces=0.3)
    logits = ranked_logits(ids, 6)
    assert_the_seed_reproduces(lambda seed: solution(batch_of(ids, logits, ratio=0.15, generator=gen(seed))))
