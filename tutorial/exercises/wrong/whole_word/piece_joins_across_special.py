"""Lets a continuation piece join the word before a special token: "a [SEP] ##x" becomes one word.

Fails: a piece right after a non-maskable position starts a word of its own

A word starts at every maskable token that is not a continuation piece, and
the previous position's maskability is never asked.
"""

import torch

from masking import MaskingBatch, budget


def whole_word(batch: MaskingBatch) -> torch.Tensor:
    ids, maskable = batch.input_ids, batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    scores = batch.scores("loss").masked_fill(~maskable, float("-inf"))
    start = maskable & ~batch.continuation[ids]  # the bug: "[SEP] ##x" does not start a word
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    first = torch.where(start, positions, 0).cummax(-1).values
    word_score = torch.full_like(scores, float("-inf")).scatter_reduce(-1, first, scores, "amax")
    length = torch.zeros_like(first).scatter_add(-1, first, maskable.long())
    order = word_score.masked_fill(~start, float("-inf")).argsort(dim=-1, descending=True, stable=True)
    sorted_length = length.gather(-1, order)
    tokens_before = sorted_length.cumsum(-1) - sorted_length
    taken = torch.zeros_like(start).scatter(-1, order, tokens_before < k.unsqueeze(-1))
    return taken.gather(-1, first) & maskable
