"""Selects the top-k tokens by loss, ignoring words: a word's other pieces stay visible.

Fails: never split a word

This is self-questioning's own token rule; the exercise asks for whole words.
"""

import torch

from masking import MaskingBatch, select_informative


def whole_word(batch: MaskingBatch) -> torch.Tensor:
    return select_informative(batch.scores("loss"), batch.maskable, batch.ratio, generator=batch.generator)
