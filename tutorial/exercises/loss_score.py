"""Exercise 6: the self-questioning loss score, s_i = -log p_i(x_i).

Stage 1 of the paper feeds the model the UNMASKED sentence and asks, at every
position i, how well it reconstructs the token x_i that it can see in its
input. The model's answer is a distribution p_i = softmax(z_i) over the
vocabulary, from the logits z_i of its MLM head, and the score is the loss on
the shown token:

    s_i = -log p_i(x_i) = logsumexp_v z_i(v) - z_i(x_i)

A learned token scores near 0; a high score marks a token the model cannot
reconstruct even when it is shown it: an informative token, the kind
self-evolution masks. This is what masking.score_tokens computes for "loss";
here you write it yourself.

Grade it:  python -m pytest tutorial/exercises/test_exercise_loss_score.py \
               --solution tutorial/exercises/loss_score.py
"""

import torch
import torch.nn.functional as F  # noqa: F401 (you may need it)


def loss_score(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """The loss score s_i = -log p_i(x_i) of every token, from the logits of an unmasked forward.

    Input: `logits`, shape (..., vocab), the model's logits on the unmasked
    sequences; `input_ids`, shape (...), the token ids x_i (int64), with the
    same leading shape: (batch, length, vocab) with (batch, length), or
    (n, vocab) with (n,) when only n positions were projected.

    Output: a tensor of the shape of `input_ids`: s_i at every position.

    Rules (the grader checks each one):
    - s_i = -log softmax(z_i)[x_i], to within 1e-4 (absolute, plus 1e-5 of
      s_i), also for a token the model rates far below the others (s_i up
      to 120, where p_i(x_i) = exp(-120) is 0 in float32): do not clamp, do
      not add an epsilon inside the log, do not take the log of a softmax.
    - Every position is scored, special tokens ([CLS], [SEP]) and padding
      included: s_i there is -log p_i of the special or padding id, like
      anywhere else. Keeping them out of the mask is the selection rule's
      job (batch.maskable), as in masking.py, not the score's.
    - Compute in float32 or wider and return float32: on a GPU the logits
      come in bfloat16, whose log-probabilities are too coarse to rank
      tokens (steps of 0.03 near 5). float32 logits give float32 scores too
      (float64 logits may give float64).
    - A logit may be -inf (a token the model rules out, p = 0): the other
      scores must stay finite and exact, never NaN.
    - Shapes that do not match (logits.shape[:-1] != input_ids.shape) raise
      a ValueError that names both shapes: torch.gather would otherwise
      quietly score a slice of the logits.
    - No Python loop over tokens or sequences.
    """
    raise NotImplementedError("exercise 6: write loss_score() in this file (see its docstring), "
                              "then grade it")
