"""Breaks ties between equal scores towards the higher position, for seeds and neighbours.

Fails: equal scores go to the lower position

torch.topk does not promise which of equal values it returns; here it is the
last, as a sort of the flipped row gives.
"""

import torch
import torch.nn.functional as F

from masking import MaskingBatch, budget


def rank(keys):
    """The bug: ties rank the higher position first."""
    return keys.flip(-1).argsort(dim=-1, descending=True, stable=True).argsort(dim=-1).flip(-1)


def span(batch: MaskingBatch) -> torch.Tensor:
    maskable = batch.maskable
    k = budget(maskable, batch.ratio, batch.generator).unsqueeze(-1)
    scores = batch.scores("loss").masked_fill(~maskable, float("-inf"))
    seeds = (rank(scores) < (k + 2) // 3) & maskable
    after = F.pad(seeds[:, :-1], (1, 0), value=False)
    before = F.pad(seeds[:, 1:], (0, 1), value=False)
    neighbours = (after | before) & maskable & ~seeds
    keys = torch.where(seeds, float("inf"), scores.masked_fill(~neighbours, float("-inf")))
    return (rank(keys) < k) & (seeds | neighbours)
