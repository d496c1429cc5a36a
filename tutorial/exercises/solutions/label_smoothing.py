"""Exercise 7, a reference solution: token-specific label smoothing (TLS).

Try the exercise (../label_smoothing.py) before reading on.
"""

import torch

from masking import IGNORE_INDEX


def label_smoothing(logits: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor,
                    alpha: float = 0.1) -> torch.Tensor:
    # Shapes first: a reference of (n, 1) or targets one row short would broadcast or gather quietly.
    if logits.dim() != 2 or targets.shape != logits.shape[:1] or reference.shape != logits.shape:
        raise ValueError(f"label_smoothing: expected logits (n, vocab), targets (n,) and reference "
                         f"(n, vocab), got logits {tuple(logits.shape)}, targets {tuple(targets.shape)} "
                         f"and reference {tuple(reference.shape)}")
    # float32 at least (float64 stays float64, for gradcheck): bf16 log-probabilities are too coarse.
    wide = torch.promote_types(logits.dtype, torch.float32)
    log_p = logits.to(wide).log_softmax(-1)
    # r_i is a target: detached, so no gradient reaches the unmasked forward. log_softmax
    # then exp gives softmax whether the reference holds logits or log-probabilities.
    r = reference.detach().to(wide).log_softmax(-1).exp()
    # The target is linear, so -sum_v target(v) log p(v) splits into two terms and the
    # (n, vocab) target is never built: (1 - alpha) * nll + alpha * cross-entropy against r.
    counted = targets != IGNORE_INDEX
    nll = -log_p.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)  # -100 -> 0, then dropped
    per_row = (1 - alpha) * nll + alpha * -(r * log_p).sum(-1)
    # where, not a product: an inf or NaN in an ignored row cannot leak into the sum. The count is
    # clamped to 1, so a batch with nothing masked gives 0 (with a gradient of zeros), not 0 / 0.
    return torch.where(counted, per_row, 0.0).sum() / counted.sum().clamp_min(1)
