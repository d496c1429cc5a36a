"""Exercise 5, a reference solution: mask rare tokens more often.

Try the exercise (../frequency.py) before reading on.
"""

import torch

from masking import MaskingBatch, budget


def frequency(batch: MaskingBatch) -> torch.Tensor:
    ids, maskable = batch.input_ids, batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    # weight = count ** -0.5; count 0 (a token unseen in training) weighs like count 1.
    weight = batch.token_counts.to(ids.device).clamp(min=1).float().rsqrt()[ids]
    # An exponential race: each position's clock E / weight rings at rate
    # `weight`, and the first k to ring are a weighted draw of k without
    # replacement, all rows at once. 1 - U lies in (0, 1], so E is finite.
    u = torch.rand(ids.shape, generator=batch.generator, device=ids.device)
    clocks = (-torch.log1p(-u) / weight).masked_fill(~maskable, float("inf"))
    return (clocks.argsort(dim=-1, stable=True).argsort(dim=-1) < k.unsqueeze(-1)) & maskable
