"""Ranks the positions by U * weight: a weighted-looking draw with the wrong probabilities.

Fails: 10 times less likely to be drawn

The k largest U * w are not a draw in proportion to w (a weight twice as
large is not twice as likely to come first); the k largest U ** (1 / w), or
the k smallest -log(1 - U) / w, are.
"""

import torch

from masking import MaskingBatch, budget


def frequency(batch: MaskingBatch) -> torch.Tensor:
    ids, maskable = batch.input_ids, batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    weight = batch.token_counts.clamp(min=1).float().rsqrt()[ids]
    keys = torch.rand(ids.shape, generator=batch.generator) * weight  # the bug: U * w
    keys = keys.masked_fill(~maskable, -1.0)
    return (keys.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1) < k.unsqueeze(-1)) & maskable
