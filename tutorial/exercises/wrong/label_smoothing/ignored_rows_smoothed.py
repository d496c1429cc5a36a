"""Bug: leaves the ignored rows' smoothing term in the sum: only their one-hot term is dropped.

The -100 labels are clamped for gather and their nll masked out, but
alpha * -sum_v r(v) log p(v) of an ignored row still counts.

Fails: changing their logits and reference must not change the loss
"""

import torch

from masking import IGNORE_INDEX


def label_smoothing(logits: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor,
                    alpha: float = 0.1) -> torch.Tensor:
    if logits.dim() != 2 or targets.shape != logits.shape[:1] or reference.shape != logits.shape:
        raise ValueError(f"label_smoothing: expected logits (n, vocab), targets (n,), reference (n, vocab); "
                         f"got {tuple(logits.shape)}, {tuple(targets.shape)}, {tuple(reference.shape)}")
    log_p = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
    r = reference.detach().to(log_p.dtype).softmax(-1)
    counted = targets != IGNORE_INDEX
    nll = -log_p.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    smooth = -(r * log_p).sum(-1)
    total = (1 - alpha) * torch.where(counted, nll, 0.0).sum() + alpha * smooth.sum()
    return total / counted.sum().clamp_min(1)
