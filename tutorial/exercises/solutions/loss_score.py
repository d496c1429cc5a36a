"""Exercise 6, a reference solution: the self-questioning loss score s_i = -log p_i(x_i).

Try the exercise (../loss_score.py) before reading on.
"""

import torch
import torch.nn.functional as F


def loss_score(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    # A mismatch must not pass quietly: gather and broadcasting would score a slice.
    if logits.shape[:-1] != input_ids.shape:
        raise ValueError(f"loss_score: expected logits of shape (*input_ids.shape, vocab) = "
                         f"{(*input_ids.shape, 'vocab')}, got logits {tuple(logits.shape)} "
                         f"and input_ids {tuple(input_ids.shape)}")
    # float32 at least: bf16 log-probabilities are too coarse to rank tokens.
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    # -log p(x) is the cross-entropy of the shown token. PyTorch's log-softmax
    # subtracts the row's maximum first, so a logit at -inf only adds exp(-inf) = 0
    # to the sum and a token rated far below the rest keeps its large, exact score.
    # Special tokens and padding are scored like any token: the mask rules them out.
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), input_ids.reshape(-1), reduction="none")
    return nll.view(input_ids.shape)
