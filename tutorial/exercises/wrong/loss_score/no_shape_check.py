"""Bug: no check that the shapes match: torch.gather then quietly scores a slice of mismatched logits.

Everything else is right; logits (3, 7, vocab) with input_ids (3, 6) return
a (3, 6) tensor of scores for the first 6 positions instead of an error.

Fails: must raise a ValueError, not return
"""

import torch


def loss_score(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    z = logits.float()
    shown = z.gather(-1, input_ids.unsqueeze(-1)).squeeze(-1)
    return torch.logsumexp(z, -1)[..., :input_ids.shape[-1]] - shown
