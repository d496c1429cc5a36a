"""Bug: "stabilises" the exponentials by subtracting the row's mean logit instead of its maximum.

The mean of a row holding a -inf logit is -inf, and -inf - (-inf) is NaN.
(Subtracting the maximum is what logsumexp does: it is finite whenever one
token is possible.)

Fails: -inf logits elsewhere in the row: NaN
"""

import torch


def loss_score(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    if logits.shape[:-1] != input_ids.shape:
        raise ValueError(f"loss_score: logits {tuple(logits.shape)} do not match "
                         f"input_ids {tuple(input_ids.shape)}")
    z = logits.float()
    z = z - z.mean(-1, keepdim=True)
    shown = z.gather(-1, input_ids.unsqueeze(-1)).squeeze(-1)
    return z.exp().sum(-1).log() - shown
