"""Bug: the log-softmax runs over dim 1 (the positions of (batch, length, vocab) logits), not the vocabulary.

The probabilities then sum to 1 over the positions of a sequence for each
token id, not over the vocabulary at each position. (For (n, vocab) logits
dim 1 is the vocabulary, so the 2-D case alone would not show it.)

Fails: s_i = -log softmax(z_i)[x_i] (softmax over the vocabulary, the last dim)
"""

import torch


def loss_score(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    if logits.shape[:-1] != input_ids.shape:
        raise ValueError(f"loss_score: logits {tuple(logits.shape)} do not match "
                         f"input_ids {tuple(input_ids.shape)}")
    log_p = logits.float().log_softmax(dim=1)
    return -log_p.gather(-1, input_ids.unsqueeze(-1)).squeeze(-1)
