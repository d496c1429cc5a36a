"""Takes a word only if it still fits in the budget (BERT's script), so a row may end below k tokens.

Fails: the budget: row

The rule is "while fewer than k tokens are taken": the last word may
overshoot k, and a sequence never gets fewer than k.
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
    order = word_score.masked_fill(~start, float("-inf")).argsort(dim=-1, descending=True, stable=True)
    sorted_length = length.gather(-1, order)
    fits = sorted_length.cumsum(-1) <= k.unsqueeze(-1)  # the bug: stops before overshooting
    taken = torch.zeros_like(start).scatter(-1, order, fits)
    return taken.gather(-1, first) & maskable
