"""Rounds k down to an even number before capping it by the maskable count: 8 of 7 moves 7, an odd count.

Fails: the row keeps its tokens

min(k - k % 2, n) is odd whenever k > n and n is odd; the last position
drawn then pairs with a position outside the draw (the first non-maskable one,
[CLS] here), whose token is copied into the row.
"""

import torch


def course(input_ids, maskable, k, generator):
    length = input_ids.shape[-1]
    moves = torch.minimum(k - k % 2, maskable.sum(-1))  # the bug: cap after rounding
    keys = torch.rand(maskable.shape, generator=generator).masked_fill(~maskable, -1.0)
    order = keys.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.arange(length).expand_as(order)
    partner = order.gather(-1, (ranks ^ 1).clamp(max=length - 1))
    source = ranks.scatter(-1, order, torch.where(ranks < moves.unsqueeze(-1), partner, order))
    corrupted = input_ids.gather(-1, source)
    return corrupted, corrupted != input_ids
