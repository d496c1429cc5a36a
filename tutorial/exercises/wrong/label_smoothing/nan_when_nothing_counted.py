"""Bug: divides by the count of counted rows without clamping it: nothing masked gives 0 / 0 = NaN.

Fails: the loss must be 0 (not 0 / 0)
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
    per_row = (1 - alpha) * nll + alpha * -(r * log_p).sum(-1)
    return torch.where(counted, per_row, 0.0).sum() / counted.sum()
