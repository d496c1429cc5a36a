"""Scores a word by the loss of its FIRST piece, ignoring the pieces after it.

Fails: a word's score is the MAXIMUM of its pieces' loss scores

"sha ##ron" with a learned "sha" and an unlearned "##ron" ranks as learned.
"""

import torch
import torch.nn.functional as F

from masking import MaskingBatch, budget


def whole_word(batch: MaskingBatch) -> torch.Tensor:
    ids, maskable = batch.input_ids, batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    scores = batch.scores("loss")
    previous = F.pad(maskable[:, :-1], (1, 0), value=False)
    start = maskable & ~(batch.continuation[ids] & previous)
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    first = torch.where(start, positions, 0).cummax(-1).values
    length = torch.zeros_like(first).scatter_add(-1, first, maskable.long())
    word_score = scores.masked_fill(~start, float("-inf"))  # the bug: the first piece's score only
    order = word_score.argsort(dim=-1, descending=True, stable=True)
    sorted_length = length.gather(-1, order)
    tokens_before = sorted_length.cumsum(-1) - sorted_length
    taken = torch.zeros_like(start).scatter(-1, order, tokens_before < k.unsqueeze(-1))
    return taken.gather(-1, first) & maskable
