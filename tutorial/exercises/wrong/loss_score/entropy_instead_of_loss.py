"""Bug: scores the entropy of p_i (the confidence-based score), not the loss on the shown token.

Fails: s_i = -log softmax(z_i)[x_i]
"""

import torch


def loss_score(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    if logits.shape[:-1] != input_ids.shape:
        raise ValueError(f"loss_score: logits {tuple(logits.shape)} do not match "
                         f"input_ids {tuple(input_ids.shape)}")
    p = logits.float().softmax(-1)
    return torch.special.entr(p).sum(-1)
