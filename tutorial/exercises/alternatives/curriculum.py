"""Exercise 4, written another way: without select_informative, the random rest from uniform keys of its own.

round(progress * k) top-loss tokens, then k minus those among the others
uniformly at random: the k - n_top smallest of independent uniform keys are a
uniformly random subset.
"""

import torch

from masking import MaskingBatch, budget


def curriculum(batch: MaskingBatch) -> torch.Tensor:
    maskable = batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    n_top = torch.round(batch.progress * k.double()).long()
    positions = torch.arange(maskable.shape[-1]).expand_as(maskable)
    top = torch.zeros_like(maskable)
    if batch.progress > 0:  # at progress 0 no score is needed: the model is not run
        scores = batch.scores("loss").masked_fill(~maskable, float("-inf"))
        order = scores.argsort(dim=-1, descending=True, stable=True)
        top = top.scatter(-1, order, positions < n_top.unsqueeze(-1)) & maskable
    keys = torch.rand(maskable.shape, generator=batch.generator).masked_fill(~maskable | top, 2.0)
    order = keys.argsort(dim=-1)
    rest = torch.zeros_like(maskable).scatter(-1, order, positions < (k - n_top).unsqueeze(-1))
    return top | (rest & maskable & ~top)
