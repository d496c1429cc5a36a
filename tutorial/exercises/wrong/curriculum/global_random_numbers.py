"""Draws the random part of the budget from torch's global generator instead of batch.generator.

Fails: the same seed must give the same mask

The budget comes from batch.generator, the random tokens do not: a seed no
longer reproduces the mask, and a resumed run masks differently.
"""

import torch

from masking import MaskingBatch, budget


def rank(keys):
    return keys.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)


def curriculum(batch: MaskingBatch) -> torch.Tensor:
    maskable = batch.maskable
    k = budget(maskable, batch.ratio, batch.generator).unsqueeze(-1)
    n_top = torch.round(batch.progress * k).long()
    scores = batch.scores("loss") if batch.progress > 0 else torch.zeros(maskable.shape)
    top = (rank(scores.masked_fill(~maskable, float("-inf"))) < n_top) & maskable
    keys = torch.rand(maskable.shape).masked_fill(~maskable | top, -1.0)  # the bug: no generator
    return top | ((rank(keys) < k - n_top) & maskable & ~top)
