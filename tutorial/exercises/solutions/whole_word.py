"""Exercise 2, a reference solution: mask whole words, the least learned first.

Try the exercise (../whole_word.py) before reading on.
"""

import torch
import torch.nn.functional as F

from masking import MaskingBatch, budget


def whole_word(batch: MaskingBatch) -> torch.Tensor:
    ids, maskable = batch.input_ids, batch.maskable
    k = budget(maskable, batch.ratio, batch.generator)
    scores = batch.scores("loss").masked_fill(~maskable, float("-inf"))
    # A piece continues the word before it only if that word is maskable, so
    # "[CLS] ##ron" makes "##ron" a word instead of gluing it to [CLS].
    previous = F.pad(maskable[:, :-1], (1, 0), value=False)
    start = maskable & ~(batch.continuation[ids] & previous)
    # Every position points at the first piece of its word, which then stands
    # for the word: it holds the word's score (the max) and length.
    positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    first = torch.where(start, positions, 0).cummax(-1).values
    word_score = torch.full_like(scores, float("-inf")).scatter_reduce(-1, first, scores, "amax")
    length = torch.zeros_like(first).scatter_add(-1, first, maskable.long())
    # Words from the highest score down; a word is taken while the tokens
    # before it fall short of k, so only the last one taken can overshoot.
    # Non-starts sort last and have all n >= k maskable tokens before them.
    order = word_score.masked_fill(~start, float("-inf")).argsort(dim=-1, descending=True, stable=True)
    sorted_length = length.gather(-1, order)
    tokens_before = sorted_length.cumsum(-1) - sorted_length
    taken = torch.zeros_like(start).scatter(-1, order, tokens_before < k.unsqueeze(-1))
    return taken.gather(-1, first) & maskable
