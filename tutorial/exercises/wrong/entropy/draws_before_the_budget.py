"""Draws tie-breaking noise from the generator before the budget, so the budget differs from masking.budget's.

Fails: before any other draw

The noise itself would be harmless; drawing it first shifts the generator, and
the budget's random rounding then rounds other rows up.
"""

import torch

from masking import MaskingBatch, budget


def entropy(batch: MaskingBatch) -> torch.Tensor:
    noise = torch.rand(batch.input_ids.shape, generator=batch.generator) * 1e-9  # the bug: drawn first
    k = budget(batch.maskable, batch.ratio, batch.generator)
    p = batch.logits().float().softmax(-1)
    h = -torch.special.xlogy(p, p).sum(-1) + noise
    rank = h.masked_fill(~batch.maskable, float("-inf")).argsort(dim=-1, descending=True, stable=True)
    return (rank.argsort(dim=-1) < k.unsqueeze(-1)) & batch.maskable
