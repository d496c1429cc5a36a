"""Scores each token by its loss -log p_i(x_i) instead of the entropy of the distribution.

Fails: not the highest-entropy tokens

The loss looks only at the shown token; the entropy at the whole distribution.
"""

import torch

from masking import MaskingBatch, select_informative


def entropy(batch: MaskingBatch) -> torch.Tensor:
    logp = batch.logits().float().log_softmax(-1)
    loss = -logp.gather(-1, batch.input_ids.unsqueeze(-1)).squeeze(-1)  # the bug: the loss
    return select_informative(loss, batch.maskable, batch.ratio, generator=batch.generator)
