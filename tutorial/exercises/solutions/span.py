"""Exercise 3, a reference solution: a short span around each informative token.

Try the exercise (../span.py) before reading on.
"""

import torch
import torch.nn.functional as F

from masking import MaskingBatch, budget


def rank(keys):
    """Each position's place in its row when sorted by key, highest first (ties: lower position first)."""
    return keys.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)


def span(batch: MaskingBatch) -> torch.Tensor:
    maskable = batch.maskable
    k = budget(maskable, batch.ratio, batch.generator).unsqueeze(-1)
    scores = batch.scores("loss").masked_fill(~maskable, float("-inf"))
    # ceil(k / 3) seeds: with a token on each side they fill the budget when
    # their spans neither touch nor hit a special token.
    seeds = (rank(scores) < (k + 2) // 3) & maskable
    # Shift the seeds one step each way, padding with False instead of rolling,
    # so a seed at a row's end does not reach round to its start.
    after = F.pad(seeds[:, :-1], (1, 0), value=False)
    before = F.pad(seeds[:, 1:], (0, 1), value=False)
    neighbours = (after | before) & maskable & ~seeds
    # Seeds outrank every neighbour; neighbours compete by score for what is left.
    keys = torch.where(seeds, float("inf"), scores.masked_fill(~neighbours, float("-inf")))
    return (rank(keys) < k) & (seeds | neighbours)
