"""Exercise 8, a reference solution: MCL's swapped token detection.

Try the exercise (../course.py) before reading on. mcl.swap draws its swaps
the same way.
"""

import torch


def course(input_ids: torch.Tensor, maskable: torch.Tensor, k: torch.Tensor,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    length = input_ids.shape[-1]
    # Cap by the maskable count first, then round down to even: 9 of 7 moves 6, not 7.
    moves = torch.minimum(k, maskable.sum(-1))
    moves = moves - moves % 2
    # A random key per position, -1 where not maskable: sorted, the keys list the maskable positions in a
    # uniformly random order, each row its own, and the others after them.
    keys = torch.rand(maskable.shape, generator=generator, device=maskable.device)
    keys = keys.masked_fill(~maskable, -1.0)
    order = keys.argsort(dim=-1, descending=True, stable=True)  # order[b, r]: the position drawn r-th
    ranks = torch.arange(length, device=input_ids.device).expand_as(order)
    # The r-th drawn pairs with the (r xor 1)-th: 0 with 1, 2 with 3, ... (clamped: an odd length's last
    # rank has no partner, and is never among the moves, which are even and at most the maskable count).
    partner = order.gather(-1, (ranks ^ 1).clamp(max=length - 1))
    # source[b, j]: the position whose token lands at j; a position not among the first `moves` drawn
    # takes its own.
    source = ranks.scatter(-1, order, torch.where(ranks < moves.unsqueeze(-1), partner, order))
    corrupted = input_ids.gather(-1, source)
    # D's label: a token swapped with an equal one is unchanged, hence "original".
    return corrupted, corrupted != input_ids
