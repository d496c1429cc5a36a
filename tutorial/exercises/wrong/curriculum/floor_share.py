"""Rounds the informative share down, int(progress * k), instead of to the nearest whole number.

Fails: the informative share is round(progress * k)

At progress 0.7 with k = 8, 5 top-loss tokens instead of round(5.6) = 6.
"""

import torch

from masking import MaskingBatch, budget


def rank(keys):
    return keys.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)


def curriculum(batch: MaskingBatch) -> torch.Tensor:
    maskable = batch.maskable
    k = budget(maskable, batch.ratio, batch.generator).unsqueeze(-1)
    n_top = (batch.progress * k).long()  # the bug: floor
    scores = batch.scores("loss") if batch.progress > 0 else torch.zeros(maskable.shape)
    top = (rank(scores.masked_fill(~maskable, float("-inf"))) < n_top) & maskable
    keys = torch.rand(maskable.shape, generator=batch.generator).masked_fill(~maskable | top, -1.0)
    return top | ((rank(keys) < k - n_top) & maskable & ~top)
