"""Exercise 5, written another way: the Gumbel-top-k trick instead of exponential clocks.

log(weight) + Gumbel noise, the k largest per row: the same distribution as
drawing k one by one in proportion to the weights (the Gumbel-max trick,
repeated on what is left).
"""

import torch

from masking import MaskingBatch, budget


def frequency(batch: MaskingBatch) -> torch.Tensor:
    ids, maskable = batch.input_ids, batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    log_weight = -0.5 * torch.maximum(batch.token_counts, torch.ones_like(batch.token_counts)).double().log()
    u = torch.rand(ids.shape, generator=batch.generator, dtype=torch.float64, device=ids.device)
    gumbel = -torch.log(-torch.log(u.clamp(min=1e-300)))
    keys = (log_weight.to(ids.device)[ids] + gumbel).masked_fill(~maskable, float("-inf"))
    rank = keys.argsort(dim=-1, descending=True).argsort(dim=-1)
    return (rank < k.unsqueeze(-1)) & maskable
