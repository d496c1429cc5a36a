"""Exercise 7: token-specific label smoothing (TLS), the loss of self-evolution training.

Stage 2 of the paper trains the model to reconstruct the masked informative
tokens, but not against a one-hot label alone: the label of masked token i
is softened toward the model's own distribution r_i for the UNMASKED
sentence (a no-grad forward of the same model, the same one that scored the
tokens), so a hard token gets its plausible alternatives:

    target_i = (1 - alpha) * onehot(x_i) + alpha * r_i,      r_i = softmax(reference_i)
    loss     = mean over counted i of  -sum_v target_i(v) * log softmax(logits_i)(v)

With alpha = 0 this is plain cross-entropy; with r_i uniform (1/|V| for every
token) it is ordinary label smoothing. The authors use alpha = 0.1. This is
smoothing.token_specific_label_smoothing; here you write it yourself.

Grade it:  python -m pytest tutorial/exercises/test_exercise_label_smoothing.py \
               --solution tutorial/exercises/label_smoothing.py
"""

import torch
import torch.nn.functional as F  # noqa: F401 (you may need it)

from masking import IGNORE_INDEX  # noqa: F401 (you will need it): -100, the label of an unmasked position


def label_smoothing(logits: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor,
                    alpha: float = 0.1) -> torch.Tensor:
    """The TLS loss: the mean over counted rows of the cross-entropy against the smoothed target.

    Input:
    - `logits`, (n, vocab): the model's logits at n positions of the MASKED
      sequences (the ones it is trained on; the gradient flows through them).
    - `targets`, (n,) int64: the original token x_i of each row, or
      IGNORE_INDEX (-100) for a row that does not count (a position that was
      not masked).
    - `reference`, (n, vocab): the logits of the UNMASKED forward at the same
      positions; r_i = softmax(reference_i). Log-probabilities give the same
      r_i (softmax does not change when a row is shifted), so accept either.
    - `alpha`, a float in [0, 1].

    Output: a 0-dim tensor, the loss.

    Rules (the grader checks each one):
    - The value is that of the formula above, with the target distribution
      built explicitly, to within 1e-5 of its size. Expand
      -sum_v target_i(v) log p(v) rather than build the (n, vocab) target:
      (1 - alpha) * (-log p(x_i)) + alpha * (-sum_v r_i(v) log p(v)).
    - alpha = 0 gives plain cross-entropy; a uniform reference (all logits
      equal) gives torch's cross_entropy(..., label_smoothing=alpha).
    - Rows whose target is IGNORE_INDEX add nothing, whatever their logits,
      and the mean divides by the number of counted rows, not by n.
      When no row counts the loss is 0 (not NaN), and backward() still runs
      (the training step then needs no special case).
    - The reference is a target, not a prediction: no gradient flows into
      it, even when it requires grad (detach it). The gradient with respect
      to the logits is that of the formula (torch.autograd.gradcheck on
      float64 inputs).
    - Compute in float32 or wider: bfloat16 logits give a float32 loss,
      computed in float32 (bf16 log-probabilities are too coarse); float64
      logits give a float64 loss (gradcheck needs it).
    - Shapes that do not fit (targets not (n,), reference not (n, vocab))
      raise a ValueError that names the shapes: broadcasting or
      torch.gather would otherwise compute a quietly wrong loss.
    - No Python loop over rows or tokens.
    """
    raise NotImplementedError("exercise 7: write label_smoothing() in this file (see its docstring), "
                              "then grade it")
