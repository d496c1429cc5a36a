"""Gathers each row's maskable positions with nonzero() and a reshape, which assumes every row has as
many maskable positions as the others.

Fails: rows with different maskable counts

On a batch of equal rows it is right; a real batch holds sentences of
different lengths, and view() then raises (or, worse, would mix rows).
"""

import torch


def course(input_ids, maskable, k, generator):
    batch, length = input_ids.shape
    free = maskable.nonzero()[:, 1].view(batch, -1)  # the bug: every row's maskable positions, one width
    keys = torch.rand(free.shape, generator=generator)
    order = free.gather(-1, keys.argsort(dim=-1, descending=True))  # maskable positions in the order drawn
    moves = torch.minimum(k, maskable.sum(-1))
    moves = (moves - moves % 2).unsqueeze(-1)
    ranks = torch.arange(free.shape[1]).expand_as(order)
    partner = order.gather(-1, (ranks ^ 1).clamp(max=free.shape[1] - 1))
    source = torch.arange(length).repeat(batch, 1)
    source = source.scatter(-1, order, torch.where(ranks < moves, partner, order))
    corrupted = input_ids.gather(-1, source)
    return corrupted, corrupted != input_ids
