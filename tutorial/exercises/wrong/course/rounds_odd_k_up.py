"""Rounds an odd count up to the next even number instead of down: k = 1 moves 2, k = 3 moves 4.

Fails: the number moved is min(k, maskable count) rounded down

It stays within the largest even number of maskable positions, so the pairs
are whole and the row keeps its tokens: only the count is wrong.
"""

import torch


def course(input_ids, maskable, k, generator):
    length = input_ids.shape[-1]
    n = maskable.sum(-1)
    moves = torch.minimum(k, n)
    moves = torch.minimum(moves + moves % 2, n - n % 2)  # the bug: up, not down
    keys = torch.rand(maskable.shape, generator=generator).masked_fill(~maskable, -1.0)
    order = keys.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.arange(length).expand_as(order)
    partner = order.gather(-1, (ranks ^ 1).clamp(max=length - 1))
    source = ranks.scatter(-1, order, torch.where(ranks < moves.unsqueeze(-1), partner, order))
    corrupted = input_ids.gather(-1, source)
    return corrupted, corrupted != input_ids
