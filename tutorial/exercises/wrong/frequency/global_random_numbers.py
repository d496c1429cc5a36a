"""Draws the race's uniforms from torch's global generator instead of batch.generator.

Fails: the same seed must give the same mask

The draw is right; a seed no longer reproduces it, and a resumed run masks
differently from an uninterrupted one.
"""

import torch

from masking import MaskingBatch, budget


def frequency(batch: MaskingBatch) -> torch.Tensor:
    ids, maskable = batch.input_ids, batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    weight = batch.token_counts.clamp(min=1).float().rsqrt()[ids]
    u = torch.rand(ids.shape)  # the bug: no generator
    clocks = (-torch.log1p(-u) / weight).masked_fill(~maskable, float("inf"))
    return (clocks.argsort(dim=-1, stable=True).argsort(dim=-1) < k.unsqueeze(-1)) & maskable
