"""Computes the entropy in the logits' own dtype, bfloat16 on a GPU, too coarse to rank close entropies.

Fails: compute the entropy in float32

With float32 logits it is right; with bfloat16 ones every step rounds to 8 bits.
"""

import torch

from masking import MaskingBatch, select_informative


def entropy(batch: MaskingBatch) -> torch.Tensor:
    p = batch.logits().softmax(-1)  # the bug: no .float()
    h = -torch.special.xlogy(p, p).sum(-1)
    return select_informative(h, batch.maskable, batch.ratio, generator=batch.generator)
