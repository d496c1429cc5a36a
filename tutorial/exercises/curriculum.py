"""Exercise 4: from random to informative masking over the run (a masking curriculum).

Early in a continued pretraining run, the tokens a model finds hardest may be
beyond it (rare names, noise); random masking keeps training broad. Later, the
hard tokens are where it has most to learn. A curriculum moves from one to the
other: all random at the start, all informative at the end.

masking.select_informative already mixes the two: its informative_fraction
spends that share of the budget on the top-scoring tokens and the rest on
random ones. train.py tells your function how far the run is in
`batch.progress`, 0.0 at the method's first step and 1.0 at its last.

Grade it:  python -m pytest tutorial/exercises/test_exercise_curriculum.py \
               --solution tutorial/exercises/curriculum.py
Train:     python train.py --preset demo --masking-fn tutorial/exercises/curriculum.py:curriculum \
               --out runs/curriculum
"""

import torch

from masking import MaskingBatch, select_informative  # noqa: F401 (you will need it)


def curriculum(batch: MaskingBatch) -> torch.Tensor:
    """Select the budget with a share `batch.progress` of top-loss tokens and the rest at random.

    Inputs: `batch.progress` (a float in [0, 1]); `batch.scores("loss")`,
    (batch, length), the loss score -log p_i(x_i) of every token (it runs the
    model on first use).

    Output: a bool tensor of the shape of `batch.input_ids`, True at the
    positions to mask.

    Rules, each checked by the grader, one test each, in this order:
    - The budget: each sequence gets exactly k = budget(batch.maskable,
      batch.ratio, batch.generator) tokens at every progress (masking.budget;
      draw it first, from batch.generator).
    - At progress 0 do not question the model: no token is chosen by score,
      and batch.logits() / batch.scores() would cost a forward of the whole
      batch. (progress is a Python float: testing it costs nothing.)
    - At progress 0 the selection is random masking: every maskable token
      equally likely, every set of k tokens equally likely.
    - At progress 1: the k top-loss tokens, as --masking informative selects.
    - In between, at progress p, round(p * k) of a sequence's budget are its
      top-loss tokens (rounded to the nearest, not down or up) ...
    - ... and the rest, k - round(p * k), uniformly random among its other
      maskable tokens.
    - So the share of top-loss tokens rises with progress.
    - The same seed gives the same mask: draw every random number from
      batch.generator.
    - And, checked first by every test: never select a non-maskable position.
    select_informative's informative_fraction does all of this (and at
    progress 0 it selects exactly what masking.random_mask would).

    The grader measures rates over hundreds or thousands of rows, with
    margins of 4.5 standard deviations: any right way of drawing passes.
    Not checked by the grader, but what train.py needs: no Python loop over
    tokens or sequences.
    """
    raise NotImplementedError("exercise 4: write curriculum() in this file (see its docstring), "
                              "then grade it")
