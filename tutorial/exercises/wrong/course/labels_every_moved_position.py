"""Labels every position it moved, even where two equal tokens swapped and nothing changed.

Fails: labels are exactly corrupted != input_ids

On rows of distinct tokens the moved positions are the changed ones; a swap
of two equal tokens leaves the row as it was, and D's label there must be
"original", as for a generator sample equal to the original in ELECTRA.
"""

import torch


def course(input_ids, maskable, k, generator):
    length = input_ids.shape[-1]
    moves = torch.minimum(k, maskable.sum(-1))
    moves = moves - moves % 2
    keys = torch.rand(maskable.shape, generator=generator).masked_fill(~maskable, -1.0)
    order = keys.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.arange(length).expand_as(order)
    partner = order.gather(-1, (ranks ^ 1).clamp(max=length - 1))
    drawn = ranks < moves.unsqueeze(-1)
    source = ranks.scatter(-1, order, torch.where(drawn, partner, order))
    moved = torch.zeros_like(maskable).scatter(-1, order, drawn)  # the bug: labels where it moved
    return input_ids.gather(-1, source), moved
