"""Selects every seed with both its neighbours, whatever the budget: up to 3 * ceil(k / 3) tokens.

Fails: never more than the budget

The neighbours must compete for the k - seeds places left.
"""

import torch
import torch.nn.functional as F

from masking import MaskingBatch, budget


def span(batch: MaskingBatch) -> torch.Tensor:
    maskable = batch.maskable
    k = budget(maskable, batch.ratio, batch.generator).unsqueeze(-1)
    scores = batch.scores("loss").masked_fill(~maskable, float("-inf"))
    rank = scores.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)
    seeds = (rank < (k + 2) // 3) & maskable
    after = F.pad(seeds[:, :-1], (1, 0), value=False)
    before = F.pad(seeds[:, 1:], (0, 1), value=False)
    return (seeds | after | before) & maskable  # the bug: no budget for the neighbours
