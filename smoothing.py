"""The self-evolution loss: token-specific label smoothing (SE stage 2).

After masking the informative tokens, the model is trained to reconstruct
them. A one-hot label says the original token is the only right answer, which
is true of the data but not of the language: a hard token usually has
plausible alternatives. SE softens the label of each masked token i with the
model's own distribution r_i, read from a no-grad forward of the UNMASKED
sequence (the same forward that scored the tokens):

    target_i = (1 - alpha) * onehot(x_i) + alpha * r_i
    loss     = mean over masked i of  -sum_v target_i(v) * log p_theta(v | masked x)

Since the target is linear, the loss splits into two cheap terms:

    (1 - alpha) * (-log p_theta(x_i))  +  alpha * (-sum_v r_i(v) log p_theta(v))

Ordinary label smoothing is the special case r_i = uniform(1/|V|), where the
second term is the mean of -log p_theta over the vocabulary; alpha = 0 is
plain cross-entropy. The authors use alpha = 0.1.

All functions take logits (n, vocab) and targets (n,) for the masked positions.
Rows whose target is IGNORE_INDEX are left out of the mean, so flattened
(batch * length) arrays work too. The loss is computed in (at least) float32
whatever the dtype of the logits, since bf16/fp16 log-probabilities of a large
vocabulary are too coarse; when nothing is masked it is a zero that still
carries gradient, so the training step needs no special case.
"""

import torch

from masking import IGNORE_INDEX


def _log_probs(x):
    """log_softmax in float32 (float64 stays float64, for gradcheck)."""
    return x.to(torch.promote_types(x.dtype, torch.float32)).log_softmax(-1)


def _smoothed_mean(log_probs, targets, smooth_term, alpha):
    """(1 - alpha) * nll + alpha * smooth_term, averaged over non-ignored rows.

    Ignored rows are replaced by 0 (torch.where, not a product, so an inf in
    an ignored row cannot turn the sum into NaN) and left out of the count;
    the count is clamped to 1 so an empty batch gives 0, not NaN.
    """
    keep = targets != IGNORE_INDEX
    nll = -log_probs.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    per_token = torch.where(keep, (1 - alpha) * nll + alpha * smooth_term, 0.0)
    return per_token.sum() / keep.sum().clamp_min(1)


def token_specific_label_smoothing(logits, targets, reference, alpha=0.1):
    """SE stage 2: the TLS loss, mean over the masked positions (a scalar).

    `reference` is the unmasked forward at the same positions, as logits or
    log-probabilities (softmax gives the same r_i from either). It is
    detached here: r_i is a target, and the authors compute it without
    gradient (in eval mode, with the current model at every step).
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1] or reference.shape != logits.shape:
        shapes = ", ".join(str(tuple(t.shape)) for t in (logits, targets, reference))
        raise ValueError(f"token_specific_label_smoothing: expected logits (n, vocab), targets (n,) and "
                         f"reference (n, vocab); got {shapes}")
    log_probs = _log_probs(logits)
    r = _log_probs(reference.detach()).exp()
    return _smoothed_mean(log_probs, targets, -(r * log_probs).sum(-1), alpha)


def uniform_label_smoothing(logits, targets, alpha=0.1):
    """Ordinary label smoothing, the ablation: TLS with r_i = uniform(1/|V|).

    Written out rather than calling torch's label_smoothing; it agrees with
    torch.nn.functional.cross_entropy(logits, targets, label_smoothing=alpha).
    """
    log_probs = _log_probs(logits)
    return _smoothed_mean(log_probs, targets, -log_probs.mean(-1), alpha)


def cross_entropy(logits, targets):
    """Plain MLM loss, the alpha = 0 baseline (ordinary MLM training).

    The same value as the two functions above at alpha = 0, through PyTorch's
    fused kernel: this is the loss of every random-masking step, so it is
    worth the few percent. Unlike torch's mean, it returns 0, not NaN, when
    every target is IGNORE_INDEX.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    total = torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (targets != IGNORE_INDEX).sum().clamp_min(1)
