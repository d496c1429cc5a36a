"""Takes the words from the LOWEST score up: the best-learned words instead of the least learned.

Fails: take words from the highest score down

A sort without descending=True.
"""

import torch
import torch.nn.functional as F

from masking import MaskingBatch, budget


def whole_word(batch: MaskingBatch) -> torch.Tensor:
    ids, maskable = batch.input_ids, batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    scores = batch.scores("loss").masked_fill(~maskable, float("-inf"))
    previous = F.pad(maskable[:, :-1], (1, 0), value=False)
    start = maskable & ~(batch.continuation[ids] & previous)
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    first = torch.where(start, positions, 0).cummax(-1).values
    word_score = torch.full_like(scores, float("-inf")).scatter_reduce(-1, first, scores, "amax")
    length = torch.zeros_like(first).scatter_add(-1, first, maskable.long())
    order = word_score.masked_fill(~start, float("inf")).argsort(dim=-1, stable=True)  # the bug: ascending
    sorted_length = length.gather(-1, order)
    tokens_before = sorted_length.cumsum(-1) - sorted_length
    taken = torch.zeros_like(start).scatter(-1, order, tokens_before < k.unsqueeze(-1))
    return taken.gather(-1, first) & maskable
