"""Does not round k down to an even number: with an odd count, the last position drawn has no partner.

Fails: the row keeps its tokens

The last drawn position pairs with the next one in the draw, which is not
among the moves and keeps its own token: that token is now in the row twice,
and the first position's is lost.
"""

import torch


def course(input_ids, maskable, k, generator):
    length = input_ids.shape[-1]
    moves = torch.minimum(k, maskable.sum(-1))  # the bug: odd counts stay odd
    keys = torch.rand(maskable.shape, generator=generator).masked_fill(~maskable, -1.0)
    order = keys.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.arange(length).expand_as(order)
    partner = order.gather(-1, (ranks ^ 1).clamp(max=length - 1))
    source = ranks.scatter(-1, order, torch.where(ranks < moves.unsqueeze(-1), partner, order))
    corrupted = input_ids.gather(-1, source)
    return corrupted, corrupted != input_ids
