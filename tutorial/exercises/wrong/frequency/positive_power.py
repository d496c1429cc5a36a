"""Weights each token by count ** +0.5: frequent tokens are masked MORE often.

Fails: expected a ratio near 10

A sign lost in the exponent.
"""

import torch

from masking import MaskingBatch, budget


def frequency(batch: MaskingBatch) -> torch.Tensor:
    ids, maskable = batch.input_ids, batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    weight = batch.token_counts.clamp(min=1).float().sqrt()[ids]  # the bug: +0.5
    u = torch.rand(ids.shape, generator=batch.generator)
    clocks = (-torch.log1p(-u) / weight).masked_fill(~maskable, float("inf"))
    return (clocks.argsort(dim=-1, stable=True).argsort(dim=-1) < k.unsqueeze(-1)) & maskable
