"""Draws its positions from torch's global random numbers instead of `generator`.

Fails: the same seed gives the same swaps

torch.randperm and torch.rand without generator= read torch's global
generator: the draw is uniform, but a seed no longer fixes it, and a resumed
run would not repeat an uninterrupted one.
"""

import torch


def course(input_ids, maskable, k, generator):
    length = input_ids.shape[-1]
    moves = torch.minimum(k, maskable.sum(-1))
    moves = moves - moves % 2
    keys = torch.rand(maskable.shape).masked_fill(~maskable, -1.0)  # the bug: no generator=
    order = keys.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.arange(length).expand_as(order)
    partner = order.gather(-1, (ranks ^ 1).clamp(max=length - 1))
    source = ranks.scatter(-1, order, torch.where(ranks < moves.unsqueeze(-1), partner, order))
    corrupted = input_ids.gather(-1, source)
    return corrupted, corrupted != input_ids
