"""At progress 0, masks the first k maskable tokens of each row instead of k random ones.

Fails: at progress 0 every maskable token is equally likely

Without scores every token looks the same, and a stable sort of equal keys
keeps the row's order.
"""

import torch

from masking import MaskingBatch, select_informative


def curriculum(batch: MaskingBatch) -> torch.Tensor:
    if batch.progress > 0:
        return select_informative(batch.scores("loss"), batch.maskable, batch.ratio,
                                  informative_fraction=batch.progress, generator=batch.generator)
    # the bug: equal scores and the top-k rule, nothing random
    return select_informative(torch.zeros(batch.input_ids.shape), batch.maskable, batch.ratio,
                              generator=batch.generator)
