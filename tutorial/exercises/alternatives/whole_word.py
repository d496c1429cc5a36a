"""Exercise 2, written another way: one row at a time, a word at a time, in plain Python.

Slow (a loop over tokens), but a direct reading of the rule, to set beside
the vectorized reference.
"""

import torch

from masking import MaskingBatch, budget


def words_of(ids, maskable, continuation):
    """Lists of positions; a piece joins the word before it only if the previous position is maskable."""
    words = []
    for i, (token, ok) in enumerate(zip(ids, maskable)):
        if ok and continuation[token] and i > 0 and maskable[i - 1]:
            words[-1].append(i)
        elif ok:
            words.append([i])
    return words


def whole_word(batch: MaskingBatch) -> torch.Tensor:
    k = budget(batch.maskable, batch.ratio, batch.generator).tolist()
    scores = batch.scores("loss").tolist()
    ids, maskable = batch.input_ids.tolist(), batch.maskable.tolist()
    continuation = batch.continuation.tolist()
    selected = torch.zeros_like(batch.maskable)
    for b in range(len(ids)):
        words = words_of(ids[b], maskable[b], continuation)
        words.sort(key=lambda w: (-max(scores[b][i] for i in w), w[0]))
        taken = 0
        for word in words:
            if taken >= k[b]:
                break
            selected[b, word] = True
            taken += len(word)
    return selected
