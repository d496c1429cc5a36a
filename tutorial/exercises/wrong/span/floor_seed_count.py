"""Takes k // 3 seeds (rounded down) instead of ceil(k / 3).

Fails: every seed is selected

With k = 4, one seed and two neighbours: three tokens where the rule gives
two seeds and the budget's four.
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
    seeds = (rank(scores) < k // 3) & maskable  # the bug: floor instead of ceil
    after = F.pad(seeds[:, :-1], (1, 0), value=False)
    before = F.pad(seeds[:, 1:], (0, 1), value=False)
    neighbours = (after | before) & maskable & ~seeds
    keys = torch.where(seeds, float("inf"), scores.masked_fill(~neighbours, float("-inf")))
    return (rank(keys) < k) & (seeds | neighbours)
