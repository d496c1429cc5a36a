"""Takes count ** -0.5 of a count of 0 as it comes: an infinite weight, drawn before every other token.

Fails: a token of count 0 weighs like count 1

0 ** -0.5 is inf in floating point; the docstring asks for count 0 to count
as 1 (clamp(min=1)).
"""

import torch

from masking import MaskingBatch, budget


def frequency(batch: MaskingBatch) -> torch.Tensor:
    ids, maskable = batch.input_ids, batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    weight = batch.token_counts.float().pow(-0.5)[ids]  # the bug: count 0 gives inf
    u = torch.rand(ids.shape, generator=batch.generator)
    clocks = (-torch.log1p(-u) / weight).masked_fill(~maskable, float("inf"))
    return (clocks.argsort(dim=-1, stable=True).argsort(dim=-1) < k.unsqueeze(-1)) & maskable
