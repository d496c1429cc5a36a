"""Exercise 3, written another way: neighbours from a max-pool of the seeds, each top-k from torch.topk.

torch.topk promises no order among equal values, so the scores are first
turned into keys that are all different: each position's rank (highest score
first, equal scores lower position first, from a stable sort), counted down
from the row length. A max-pool of width 3 over the seeds marks each seed and
both its neighbours.
"""

import torch
import torch.nn.functional as F

from masking import MaskingBatch, budget


def unique_keys(scores):
    """Keys with the order of (score descending, position ascending), all different: ranks as floats."""
    order = scores.argsort(dim=-1, descending=True, stable=True)
    length = scores.shape[-1]
    return torch.empty_like(scores).scatter_(-1, order, torch.arange(length, 0, -1.0).expand_as(scores))


def top(keys, k, mask):
    """The k[b] largest keys of each row, as a bool mask (keys outside `mask` never win)."""
    keys = keys.masked_fill(~mask, -1.0)
    chosen = keys.topk(keys.shape[-1], dim=-1).indices
    taken = torch.arange(keys.shape[-1]).expand_as(keys) < k.unsqueeze(-1)
    return torch.zeros_like(mask).scatter(-1, chosen, taken) & mask


def span(batch: MaskingBatch) -> torch.Tensor:
    maskable = batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    keys = unique_keys(batch.scores("loss").masked_fill(~maskable, float("-inf")))
    seeds = top(keys, -(-k // 3), maskable)
    # A max-pool of width 3 marks each seed and both its neighbours; padding
    # the row with zeros (not wrapping) keeps the ends apart.
    grown = F.max_pool1d(seeds.float().unsqueeze(1), 3, stride=1, padding=1).squeeze(1).bool()
    neighbours = grown & maskable & ~seeds
    return seeds | top(keys, k - seeds.sum(-1), neighbours)
