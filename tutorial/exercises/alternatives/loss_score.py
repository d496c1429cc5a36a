"""Exercise 6, a second correct solution, written another way: logsumexp minus the shown token's logit.

s_i = -log softmax(z_i)[x_i] = logsumexp_v z_i(v) - z_i(x_i). torch.logsumexp
subtracts the row's maximum before exponentiating, so it neither overflows on
large logits nor turns a -inf logit into NaN.
"""

import torch


def loss_score(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    if logits.dim() != input_ids.dim() + 1 or logits.shape[:-1] != input_ids.shape:
        raise ValueError(f"loss_score: logits {tuple(logits.shape)} do not match input_ids "
                         f"{tuple(input_ids.shape)}; expected logits (*input_ids.shape, vocab)")
    z = logits.float() if logits.dtype != torch.float64 else logits
    shown = z.gather(-1, input_ids.long().unsqueeze(-1)).squeeze(-1)
    return torch.logsumexp(z, dim=-1) - shown
