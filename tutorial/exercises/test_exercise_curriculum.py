"""Grader of exercise 4 (curriculum.py): random masking at progress 0, top-loss at 1, a linear share
between."""

import torch

from grading import (CLS, MASK, SEP, VOCAB, assert_selection, assert_the_seed_reproduces, batch_of, gen,
                     loss_scores, random_rows, ranked_logits, rows, top_k)
from masking import budget, random_mask

EXERCISE = "curriculum"


def full_rows(n_rows, seed):
    """[CLS] + 16 tokens + [SEP]: with ratio 0.5 every row's budget is exactly k = 8."""
    ids = torch.randint(5, 30, (n_rows, 18), generator=gen(seed))
    ids[:, 0], ids[:, -1] = CLS, SEP
    return ids


def test_progress_0_is_random_masking_without_questioning_the_model(solution):
    ids = random_rows(32, 24, seed=1)
    logits = ranked_logits(ids, 1)
    for seed in range(3):
        batch = batch_of(ids, logits, ratio=0.15, generator=gen(seed), progress=0.0)
        got = solution(batch)
        assert_selection(got, batch)
        assert not batch.calls, "at progress 0 no score is needed: do not run the model"
        _, _, want = random_mask(ids, batch.maskable, MASK, VOCAB, 0.15, gen(seed))
        assert rows(got) == rows(want), "at progress 0 the selection is random_mask's for the same generator"


def test_progress_1_is_the_top_loss_tokens(solution):
    ids = random_rows(32, 24, seed=2)
    logits = ranked_logits(ids, 2)
    batch = batch_of(ids, logits, ratio=0.15, generator=gen(3), progress=1.0)
    got = solution(batch)
    assert_selection(got, batch)
    want = top_k(loss_scores(ids, logits), batch.maskable, budget(batch.maskable, 0.15, gen(3)))
    assert rows(got) == rows(want)


def test_in_between_a_linear_share_of_the_budget_is_top_loss(solution):
    ids = full_rows(8, seed=4)
    logits = ranked_logits(ids, 4)
    scores, k = loss_scores(ids, logits), 8
    maskable = ~torch.isin(ids, torch.tensor([CLS, SEP]))
    top = [top_k(scores, maskable, torch.full((8,), n)) for n in range(k + 1)]
    overlap = {}
    for progress in (0.25, 0.5, 0.75):
        n_top, hits, varied = round(progress * k), [], False
        for seed in range(10):
            batch = batch_of(ids, logits, ratio=0.5, generator=gen(seed), progress=progress)
            got = solution(batch)
            assert_selection(got, batch)
            assert got.sum(-1).tolist() == [k] * 8, f"progress {progress}: every row's budget is {k}"
            missing = top[n_top] & ~got
            assert not missing.any(), \
                (f"progress {progress}: the {n_top} top-loss tokens of each row must be selected, "
                 f"missing {rows(missing)}")
            hits.append((got & top[k]).sum(-1).float())
            varied |= not torch.equal(got, top[k])
        assert varied, \
            f"progress {progress}: the rest of the budget must be random, not the next top-loss tokens"
        overlap[progress] = torch.cat(hits).mean().item()
    assert overlap[0.25] < overlap[0.5] < overlap[0.75] < k, f"top-loss tokens selected on average: {overlap}"


def test_the_seed_reproduces_the_mask(solution):
    ids = full_rows(8, seed=5)
    logits = ranked_logits(ids, 5)
    run = lambda seed: solution(batch_of(ids, logits, ratio=0.5, generator=gen(seed), progress=0.5))
    assert_the_seed_reproduces(run, other_seeds=[1])
