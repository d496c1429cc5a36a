"""Fills the rest of the budget with the leftmost neighbours instead of the highest-scoring ones.

Fails: the neighbours with the highest loss scores

Ranking the neighbours by position (all keys equal, a stable sort) ignores
which of them the model knows least.
"""

import torch
import torch.nn.functional as F

from masking import MaskingBatch, budget


def rank(keys):
    return keys.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)


def span(batch: MaskingBatch) -> torch.Tensor:
    maskable = batch.maskable
    k = budget(maskable, batch.ratio, batch.generator).unsqueeze(-1)
    scores = batch.scores("loss").masked_fill(~maskable, float("-inf"))
    seeds = (rank(scores) < (k + 2) // 3) & maskable
    after = F.pad(seeds[:, :-1], (1, 0), value=False)
    before = F.pad(seeds[:, 1:], (0, 1), value=False)
    neighbours = (after | before) & maskable & ~seeds
    keys = torch.where(seeds, 2.0, neighbours.float())  # the bug: every neighbour ties, the leftmost wins
    return (rank(keys) < k) & (seeds | neighbours)
