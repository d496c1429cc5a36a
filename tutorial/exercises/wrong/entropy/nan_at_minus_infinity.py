"""Writes p log p as p * log(p), which is 0 * -inf = NaN where a logit is -inf.

Fails: p log p = 0, not NaN

Every entropy of a row with a ruled-out token turns NaN, and NaN scores are
never selected.
"""

import torch

from masking import MaskingBatch, select_informative


def entropy(batch: MaskingBatch) -> torch.Tensor:
    p = batch.logits().float().softmax(-1)
    h = -(p * p.log()).sum(-1)  # the bug: 0 * log 0 is NaN
    return select_informative(h, batch.maskable, batch.ratio, generator=batch.generator)
