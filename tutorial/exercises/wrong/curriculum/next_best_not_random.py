"""Fills the rest of the budget with the next-best tokens by loss: the top k at every progress above 0.

Fails: = 2 top-loss tokens, but the top 8 are selected in every row

The "random" part of the budget is ranked by score too, so the curriculum
jumps from random masking to pure informative masking at its first step.
"""

import torch

from masking import MaskingBatch, budget


def curriculum(batch: MaskingBatch) -> torch.Tensor:
    maskable = batch.maskable
    k = budget(maskable, batch.ratio, batch.generator).unsqueeze(-1)
    if batch.progress == 0:
        keys = torch.rand(maskable.shape, generator=batch.generator)
    else:
        keys = batch.scores("loss")  # the bug: the rest by score as well
    keys = keys.masked_fill(~maskable, float("-inf"))
    return (keys.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1) < k) & maskable
