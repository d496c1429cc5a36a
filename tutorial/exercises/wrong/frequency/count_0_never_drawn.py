"""Gives tokens of count 0 the weight 0, so a token unseen in training is never masked.

Fails: a token of count 0 weighs like count 1

Replacing the infinite weight by 0 (nan_to_num(posinf=0)) swaps one wrong
weight for another: the rarest tokens of all are then never drawn.
"""

import torch

from masking import MaskingBatch, budget


def frequency(batch: MaskingBatch) -> torch.Tensor:
    ids, maskable = batch.input_ids, batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    weight = batch.token_counts.float().pow(-0.5).nan_to_num(posinf=0.0)[ids]  # the bug: weight 0
    u = torch.rand(ids.shape, generator=batch.generator)
    clocks = (-torch.log1p(-u) / weight).masked_fill(~maskable, float("inf"))
    return (clocks.argsort(dim=-1, stable=True).argsort(dim=-1) < k.unsqueeze(-1)) & maskable
