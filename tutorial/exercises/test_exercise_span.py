"""Grader of exercise 3 (span.py): ceil(k/3) top-scoring seeds, each grown by a neighbour on each side,
within k."""

import torch

from grading import (CLS, PAD, SEP, assert_follows_the_rule, assert_selection, assert_the_seed_reproduces,
                     batch_of, gen, logits_with_loss, random_rows, ranked_logits, rows, select_on_random_rows)

EXERCISE = "span"


def by_score(positions, scores):
    return sorted(positions, key=lambda i: (-scores[i].item(), i))


def expected(batch, scores, k):
    """The rule, one row at a time: seeds, their maskable neighbours, the best neighbours up to k."""
    selected = torch.zeros(batch.input_ids.shape, dtype=torch.bool)
    length = batch.input_ids.shape[1]
    for b in range(len(selected)):
        maskable = [i for i in range(length) if batch.maskable[b, i]]
        seeds = by_score(maskable, scores[b])[:(int(k[b]) + 2) // 3]
        neighbours = {j for i in seeds for j in (i - 1, i + 1)
                      if 0 <= j < length and batch.maskable[b, j] and j not in seeds}
        selected[b, seeds + by_score(neighbours, scores[b])[:int(k[b]) - len(seeds)]] = True
    return selected


def test_a_seed_next_to_sep_grows_only_inwards(solution):
    # 8 maskable tokens, k = 4: seeds at 8 (the top, next to [SEP]) and 4;
    # neighbours 7, 3, 5, of which the two best (5, then 7) fill the budget.
    ids = torch.tensor([[CLS, 5, 6, 7, 8, 9, 10, 11, 12, SEP, PAD]])
    badness = torch.tensor([[0, 0, 1, 2, 8, 5, 3, 4, 9, 0, 0]])
    batch = batch_of(ids, logits_with_loss(ids, badness), ratio=0.5)
    got = solution(batch)
    assert_selection(got, batch)
    assert rows(got) == [[4, 5, 7, 8]]


def test_a_span_never_wraps_around_the_row(solution):
    # No special token at all: the top seed sits at the last position, the
    # second best token at the first. k = 3: one seed, and only one neighbour.
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]])
    badness = torch.tensor([[10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11]])
    batch = batch_of(ids, logits_with_loss(ids, badness), ratio=0.25)
    got = solution(batch)
    assert_selection(got, batch)
    assert rows(got) == [[10, 11]], "the last position's span must not reach round to position 0"


def test_selects_the_right_spans(solution):
    assert_follows_the_rule(solution, expected, "not the seeds and their best neighbours")


def test_spans_are_contiguous_around_seeds_and_within_the_budget(solution):
    batch, got, scores, k = select_on_random_rows(solution, 64, 32, seed=4, ratio=0.3, mask_seed=5)
    for b in range(len(got)):
        count = int(got[b].sum())
        assert count <= k[b], f"row {b}: {count} tokens, above the budget {int(k[b])}"
        candidates = [i for i in range(got.shape[1]) if batch.maskable[b, i]]
        seeds = by_score(candidates, scores[b])[:(int(k[b]) + 2) // 3]
        assert got[b, seeds].all(), \
            f"row {b}: a seed (one of the top ceil(k/3) tokens {seeds}) is not selected"
        lonely = [i for i in rows(got[b:b + 1])[0]
                  if i not in seeds and not any(j in seeds for j in (i - 1, i + 1))]
        assert not lonely, f"row {b}: positions {lonely} are neither seeds nor next to one"


def test_the_seed_reproduces_the_mask(solution):
    ids = random_rows(16, 24, seed=6)
    logits = ranked_logits(ids, 6)
    assert_the_seed_reproduces(lambda seed: solution(batch_of(ids, logits, ratio=0.15, generator=gen(seed))))
