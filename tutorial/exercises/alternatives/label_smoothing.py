"""Exercise 7, a second correct solution, written another way: the (n, vocab) target, built in full.

The formula as the paper writes it: target = (1 - alpha) onehot + alpha r,
loss = -sum_v target(v) log p(v), averaged over the counted rows, which are
picked out by boolean indexing first (so an ignored row is never computed
at all). It costs an (n_counted, vocab) tensor that the two-term form avoids.
"""

import torch
import torch.nn.functional as F

from masking import IGNORE_INDEX


def label_smoothing(logits: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor,
                    alpha: float = 0.1) -> torch.Tensor:
    n, vocab = logits.shape if logits.dim() == 2 else (-1, -1)
    if n < 0 or tuple(targets.shape) != (n,) or tuple(reference.shape) != (n, vocab):
        raise ValueError(f"label_smoothing: logits {tuple(logits.shape)}, targets {tuple(targets.shape)}, "
                         f"reference {tuple(reference.shape)}; expected (n, vocab), (n,), (n, vocab)")
    counted = targets != IGNORE_INDEX
    z = logits[counted]
    z = z.double() if z.dtype == torch.float64 else z.float()
    with torch.no_grad():
        r = torch.softmax(reference[counted].to(z.dtype), dim=-1)
    target = (1 - alpha) * F.one_hot(targets[counted], vocab).to(z.dtype) + alpha * r
    total = -(target * torch.log_softmax(z, dim=-1)).sum()
    return total / max(int(counted.sum()), 1)
