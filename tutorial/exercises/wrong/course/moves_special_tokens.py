"""Draws the positions to swap among all positions, not only the maskable ones: [CLS] and [SEP] move.

Fails: only maskable positions move

The count is right (capped by the maskable count), but every position gets
a random key, so [CLS], [SEP] and padding are drawn like any token.
"""

import torch


def course(input_ids, maskable, k, generator):
    length = input_ids.shape[-1]
    moves = torch.minimum(k, maskable.sum(-1))
    moves = moves - moves % 2
    keys = torch.rand(maskable.shape, generator=generator)  # the bug: no -1 outside `maskable`
    order = keys.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.arange(length).expand_as(order)
    partner = order.gather(-1, (ranks ^ 1).clamp(max=length - 1))
    source = ranks.scatter(-1, order, torch.where(ranks < moves.unsqueeze(-1), partner, order))
    corrupted = input_ids.gather(-1, source)
    return corrupted, corrupted != input_ids
