"""Bug: no float32 at all: bfloat16 logits give bfloat16 scores.

Fails: dtype: torch.bfloat16 logits must give float32 scores
"""

import torch


def loss_score(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    if logits.shape[:-1] != input_ids.shape:
        raise ValueError(f"loss_score: logits {tuple(logits.shape)} do not match "
                         f"input_ids {tuple(input_ids.shape)}")
    return torch.logsumexp(logits, -1) - logits.gather(-1, input_ids.unsqueeze(-1)).squeeze(-1)
