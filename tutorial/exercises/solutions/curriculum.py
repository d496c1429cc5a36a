"""Exercise 4, a reference solution: from random to informative masking over the run.

Try the exercise (../curriculum.py) before reading on.
"""

import torch

from masking import MaskingBatch, select_informative


def curriculum(batch: MaskingBatch) -> torch.Tensor:
    # At progress 0 no token is chosen by its score, so any scores will do:
    # zeros spare the forward that batch.scores() would run.
    if batch.progress > 0:
        scores = batch.scores("loss")
    else:
        scores = torch.zeros(batch.input_ids.shape, device=batch.input_ids.device)
    return select_informative(scores, batch.maskable, batch.ratio, informative_fraction=batch.progress,
                              generator=batch.generator)
