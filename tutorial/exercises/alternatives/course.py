"""Exercise 8, written another way: each position's rank in the draw, and the first half of the drawn
positions paired with the second half (rank r with rank r + moves / 2) instead of neighbours in the draw.

Any pairing of uniformly drawn positions is uniform; the two solutions draw
different swaps from one seed, and the grader, which checks properties,
accepts both.
"""

import torch


def course(input_ids: torch.Tensor, maskable: torch.Tensor, k: torch.Tensor,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    half = (torch.minimum(k, maskable.sum(-1)) // 2).unsqueeze(-1)  # pairs per row
    uniform = torch.rand(maskable.shape, generator=generator, device=maskable.device)
    keys = torch.where(maskable, uniform, -1.0)
    order = keys.argsort(dim=-1, descending=True, stable=True)  # the positions, in the order drawn
    rank = order.argsort(dim=-1)  # rank[b, j]: when position j was drawn
    # Ranks below `half` swap with the rank `half` later, ranks in [half, 2 half) with the rank `half`
    # earlier; the rest stay.
    partner_rank = torch.where(rank < half, rank + half, torch.where(rank < 2 * half, rank - half, rank))
    source = order.gather(-1, partner_rank)
    corrupted = torch.gather(input_ids, -1, source)
    labels = torch.ne(corrupted, input_ids)
    return corrupted, labels
