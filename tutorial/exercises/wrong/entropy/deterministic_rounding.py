"""Rounds the budget n * ratio to the nearest whole number instead of drawing masking.budget.

Fails: rounded without the random draw of masking.budget

round(n * ratio) gives a 10-token sequence 2 masks at ratio 0.15, never 1:
the expected number is then 2, not 1.5.
"""

import torch

from masking import MaskingBatch


def entropy(batch: MaskingBatch) -> torch.Tensor:
    k = (batch.maskable.sum(-1) * batch.ratio).round().long()  # the bug: no random rounding
    p = batch.logits().float().softmax(-1)
    h = (-torch.special.xlogy(p, p).sum(-1)).masked_fill(~batch.maskable, float("-inf"))
    rank = h.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)
    return (rank < k.unsqueeze(-1)) & batch.maskable
