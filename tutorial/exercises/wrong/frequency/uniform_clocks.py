"""Uses uniform clocks U / weight instead of exponential ones, -log(1 - U) / weight.

Fails: draw without replacement like one by one

The k first of U / w to ring are not a weighted draw: only an exponential
clock's memorylessness makes the race equal to drawing one by one. The first
draw is nearly right, the later ones are not.
"""

import torch

from masking import MaskingBatch, budget


def frequency(batch: MaskingBatch) -> torch.Tensor:
    ids, maskable = batch.input_ids, batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    weight = batch.token_counts.clamp(min=1).float().rsqrt()[ids]
    u = torch.rand(ids.shape, generator=batch.generator)
    clocks = (u / weight).masked_fill(~maskable, float("inf"))  # the bug: U, not -log(1 - U)
    return (clocks.argsort(dim=-1, stable=True).argsort(dim=-1) < k.unsqueeze(-1)) & maskable
