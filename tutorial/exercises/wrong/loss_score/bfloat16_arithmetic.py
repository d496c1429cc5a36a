"""Bug: computes the log-softmax in the logits' own dtype and casts only the result to float32.

With bfloat16 logits the log-probabilities are rounded to bf16 (steps of
0.03 near 5) before the cast, which cannot bring the lost digits back.

Fails: bfloat16 logits: compute in float32
"""

import torch


def loss_score(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    if logits.shape[:-1] != input_ids.shape:
        raise ValueError(f"loss_score: logits {tuple(logits.shape)} do not match "
                         f"input_ids {tuple(input_ids.shape)}")
    log_p = logits.log_softmax(-1)
    return -log_p.gather(-1, input_ids.unsqueeze(-1)).squeeze(-1).float()
