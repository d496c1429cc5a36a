"""Shifts the seeds with torch.roll, so a seed at a row's last position grows into position 0.

Fails: a span never wraps around

roll moves the last column to the front; F.pad with a False column does not.
"""

import torch

from masking import MaskingBatch, budget


def rank(keys):
    return keys.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)


def span(batch: MaskingBatch) -> torch.Tensor:
    maskable = batch.maskable
    k = budget(maskable, batch.ratio, batch.generator).unsqueeze(-1)
    scores = batch.scores("loss").masked_fill(~maskable, float("-inf"))
    seeds = (rank(scores) < (k + 2) // 3) & maskable
    neighbours = (seeds.roll(1, -1) | seeds.roll(-1, -1)) & maskable & ~seeds  # the bug: wraps around
    keys = torch.where(seeds, float("inf"), scores.masked_fill(~neighbours, float("-inf")))
    return (rank(keys) < k) & (seeds | neighbours)
