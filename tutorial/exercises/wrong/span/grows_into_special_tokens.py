"""Lets a span grow into [CLS], [SEP] or padding next to a seed.

Fails: never select a non-maskable position

The neighbours are not intersected with `maskable`.
"""

import torch
import torch.nn.functional as F

from masking import MaskingBatch, budget


def rank(keys):
    return keys.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)


def span(batch: MaskingBatch) -> torch.Tensor:
    maskable = batch.maskable
    k = budget(maskable, batch.ratio, batch.generator).unsqueeze(-1)
    scores = batch.scores("loss")
    seeds = (rank(scores.masked_fill(~maskable, float("-inf"))) < (k + 2) // 3) & maskable
    after = F.pad(seeds[:, :-1], (1, 0), value=False)
    before = F.pad(seeds[:, 1:], (0, 1), value=False)
    neighbours = (after | before) & ~seeds  # the bug: no & maskable
    keys = torch.where(seeds, float("inf"), scores.masked_fill(~neighbours, float("-inf")))
    return (rank(keys) < k) & (seeds | neighbours)
