"""Bug: computes the log-softmax in the logits' dtype and casts only the loss to float32.

bf16 log-probabilities carry 3 significant digits; the cast at the end cannot
bring the rest back.

Fails: bfloat16 logits: compute in float32
"""

import torch

from masking import IGNORE_INDEX


def label_smoothing(logits: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor,
                    alpha: float = 0.1) -> torch.Tensor:
    if logits.dim() != 2 or targets.shape != logits.shape[:1] or reference.shape != logits.shape:
        raise ValueError(f"label_smoothing: expected logits (n, vocab), targets (n,), reference (n, vocab); "
                         f"got {tuple(logits.shape)}, {tuple(targets.shape)}, {tuple(reference.shape)}")
    log_p = logits.log_softmax(-1)
    r = reference.detach().softmax(-1)
    counted = targets != IGNORE_INDEX
    nll = -log_p.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    per_row = (1 - alpha) * nll + alpha * -(r * log_p).sum(-1)
    loss = torch.where(counted, per_row, 0.0).sum() / counted.sum().clamp_min(1)
    return loss.to(torch.promote_types(logits.dtype, torch.float32))
