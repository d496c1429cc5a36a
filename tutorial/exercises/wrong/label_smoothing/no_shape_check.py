"""Bug: no check of the shapes: a (n, 1) reference broadcasts, and targets one row short gather quietly.

Fails: must raise a ValueError, not return
"""

import torch

from masking import IGNORE_INDEX


def label_smoothing(logits: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor,
                    alpha: float = 0.1) -> torch.Tensor:
    log_p = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
    r = reference.detach().to(log_p.dtype).softmax(-1)
    counted = targets != IGNORE_INDEX
    nll = -log_p[:len(targets)].gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    per_row = (1 - alpha) * nll + alpha * -(r * log_p).sum(-1)[:len(targets)]
    return torch.where(counted, per_row, 0.0).sum() / counted.sum().clamp_min(1)
