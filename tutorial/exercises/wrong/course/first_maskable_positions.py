"""Swaps the first maskable positions of each row (1 with 2, 3 with 4, ...) instead of random ones.

Fails: every maskable position moves equally often

Every other rule holds, and the same seed gives the same result; but the
positions are not drawn at all, so the start of each sentence is always
swapped and its end never.
"""

import torch


def course(input_ids, maskable, k, generator):
    length = input_ids.shape[-1]
    moves = torch.minimum(k, maskable.sum(-1))
    moves = moves - moves % 2
    keys = torch.arange(length, 0, -1.0).expand(maskable.shape).masked_fill(~maskable, -1.0)  # the bug
    order = keys.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.arange(length).expand_as(order)
    partner = order.gather(-1, (ranks ^ 1).clamp(max=length - 1))
    source = ranks.scatter(-1, order, torch.where(ranks < moves.unsqueeze(-1), partner, order))
    corrupted = input_ids.gather(-1, source)
    return corrupted, corrupted != input_ids
