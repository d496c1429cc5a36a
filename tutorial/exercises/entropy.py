"""Exercise 1: mask the tokens the model is least sure about (entropy scoring).

The paper offers two ways to score a token from the model's view of the
UNMASKED sentence. The project's default is the loss, -log p_i(x_i): how badly
the model reconstructs a token it can see. The other is the entropy of the
whole distribution at that position,

    H_i = -sum_v p_i(v) log p_i(v),

high where the model spreads its belief over many tokens, whether or not the
right one is among them. Here you compute it yourself, from the logits.

Grade it:  python -m pytest tutorial/exercises/test_exercise_entropy.py \
               --solution tutorial/exercises/entropy.py
Train:     python train.py --preset demo --masking-fn tutorial/exercises/entropy.py:entropy --out runs/entropy
"""

import torch

from masking import MaskingBatch, budget, select_informative  # noqa: F401 (you may need them)


def entropy(batch: MaskingBatch) -> torch.Tensor:
    """Select, per sequence, the budget of tokens with the highest entropy H_i.

    Input: `batch.logits()`, shape (batch, length, vocab): the model's logits
    on the unmasked batch (it runs the model on first use). Compute H_i from
    them yourself, with torch operations: that is the exercise
    (masking.score_tokens(logits, ids, "entropy") would do it for you).

    Output: a bool tensor of the shape of `batch.input_ids`, True at the
    positions to mask.

    Rules, each checked by the grader, one test each, in this order:
    - Never select a non-maskable position (`batch.maskable` is False at
      [CLS], [SEP], padding and the other special tokens), even where its
      entropy is the highest.
    - The budget: each sequence gets exactly
      k = budget(batch.maskable, batch.ratio, batch.generator) tokens
      (masking.budget; draw it before any other random number, from
      batch.generator).
    - The k highest entropies win.
    - Equal entropies go to the lower position.
      (masking.select_informative(scores, maskable, ratio, generator=...)
      picks the budget highest scores of any (batch, length) tensor you give
      it, ties to the lower position.)
    - A logit may be -inf (a token the model rules out). Its p log p is 0, not
      NaN: 0 * log 0 must not poison the sum.
    - Compute in float32 or wider: on a GPU the logits may come in bfloat16,
      too coarse to rank entropies that are close.
    - The same seed gives the same mask, another seed (another rounding of
      the budget) another: the generator is the only source of chance.

    Not checked by the grader, but what train.py needs: no Python loop over
    tokens or sequences (the function runs inside every training step).
    """
    raise NotImplementedError("exercise 1: write entropy() in this file (see its docstring), then grade it")
