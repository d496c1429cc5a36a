"""Selects one token more than the budget: the top k + 1 entropies.

Fails: off by one

A rank comparison written as `rank <= k` instead of `rank < k`.
"""

import torch

from masking import MaskingBatch, budget


def entropy(batch: MaskingBatch) -> torch.Tensor:
    k = budget(batch.maskable, batch.ratio, batch.generator)
    p = batch.logits().float().softmax(-1)
    h = (-torch.special.xlogy(p, p).sum(-1)).masked_fill(~batch.maskable, float("-inf"))
    rank = h.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)
    return (rank <= k.unsqueeze(-1)) & batch.maskable  # the bug: <= takes k + 1
