"""Bug: sets the score of padding and special tokens to 0, so that they are "never selected".

Keeping them out of the mask is the selection rule's job (batch.maskable);
the score itself is -log p_i(x_i) everywhere, as masking.score_tokens gives it.

Fails: [CLS], [SEP] and [PAD] positions score -log p_i(x_i) of their own id
"""

import torch
import torch.nn.functional as F

FIRST_ORDINARY_ID = 5  # [PAD], [UNK], [CLS], [SEP], [MASK] are ids 0..4 (BERT's are not: another bug)


def loss_score(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    if logits.shape[:-1] != input_ids.shape:
        raise ValueError(f"loss_score: logits {tuple(logits.shape)} do not match "
                         f"input_ids {tuple(input_ids.shape)}")
    nll = F.cross_entropy(logits.float().flatten(0, -2), input_ids.flatten(), reduction="none")
    return nll.view(input_ids.shape).masked_fill(input_ids < FIRST_ORDINARY_ID, 0.0)
