"""Breaks ties between equal entropies towards the higher position.

Fails: equal entropies go to the lower position

Sorting the reversed row (flip, sort, flip back) is a stable sort that puts
the LAST of equal keys first.
"""

import torch

from masking import MaskingBatch, budget


def entropy(batch: MaskingBatch) -> torch.Tensor:
    k = budget(batch.maskable, batch.ratio, batch.generator)
    p = batch.logits().float().softmax(-1)
    h = (-torch.special.xlogy(p, p).sum(-1)).masked_fill(~batch.maskable, float("-inf"))
    order = h.flip(-1).argsort(dim=-1, descending=True, stable=True)  # the bug: ranks the reversed row
    rank = order.argsort(dim=-1).flip(-1)
    return (rank < k.unsqueeze(-1)) & batch.maskable
