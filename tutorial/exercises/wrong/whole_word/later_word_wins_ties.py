"""Breaks ties between equal word scores towards the LATER word.

Fails: equal scores: the earlier word first

An unstable sort on a flipped row: the last of equal words comes first.
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
    length_ = ids.shape[1]
    positions = torch.arange(length_).expand_as(ids)
    first = torch.where(start, positions, 0).cummax(-1).values
    word_score = torch.full_like(scores, float("-inf")).scatter_reduce(-1, first, scores, "amax")
    length = torch.zeros_like(first).scatter_add(-1, first, maskable.long())
    keys = word_score.masked_fill(~start, float("-inf"))
    order = length_ - 1 - keys.flip(-1).argsort(dim=-1, descending=True, stable=True)  # the bug: flipped
    sorted_length = length.gather(-1, order)
    tokens_before = sorted_length.cumsum(-1) - sorted_length
    taken = torch.zeros_like(start).scatter(-1, order, tokens_before < k.unsqueeze(-1))
    return taken.gather(-1, first) & maskable
