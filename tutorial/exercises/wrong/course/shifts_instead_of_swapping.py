"""Shifts the drawn tokens round a cycle (each drawn position takes the next drawn one's token) instead
of swapping them in pairs.

Fails: moved tokens change places in pairs

The count, the tokens kept and the maskable positions are all right; with
two moves a cycle is a swap, but with four or more it is not.
"""

import torch


def course(input_ids, maskable, k, generator):
    length = input_ids.shape[-1]
    moves = torch.minimum(k, maskable.sum(-1))
    moves = (moves - moves % 2).unsqueeze(-1)
    keys = torch.rand(maskable.shape, generator=generator).masked_fill(~maskable, -1.0)
    order = keys.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.arange(length).expand_as(order)
    nxt = order.gather(-1, (ranks + 1) % moves.clamp(min=1))  # the bug: the next one round the cycle
    source = ranks.scatter(-1, order, torch.where(ranks < moves, nxt, order))
    corrupted = input_ids.gather(-1, source)
    return corrupted, corrupted != input_ids
