"""Exercise 5: mask rare tokens more often (frequency-weighted masking).

Random masking spends most of its budget on frequent tokens ("the", ",",
"of"), which the model predicts well long before the rare ones. Weighting
each token by a negative power of its corpus count moves the budget towards
the rare tokens without any model in the loop: a cheap, static cousin of
self-questioning. (word2vec subsamples frequent words for the same reason.)

train.py counts every token of the training blocks once, before training, and
hands the counts to your function in `batch.token_counts`.

Grade it:  python -m pytest tutorial/exercises/test_exercise_frequency.py \
               --solution tutorial/exercises/frequency.py
Train:     python train.py --preset demo --masking-fn tutorial/exercises/frequency.py:frequency \
               --out runs/frequency
"""

import torch

from masking import MaskingBatch, budget  # noqa: F401 (you will need it)


def frequency(batch: MaskingBatch) -> torch.Tensor:
    """Draw the budget at random, without replacement, with weights count ** -0.5.

    Inputs: `batch.token_counts`, a (vocab,) integer tensor, how often each
    token id occurs in the training corpus; `batch.input_ids`; `batch.maskable`.
    The model is not needed: do not question it.

    Output: a bool tensor of the shape of `batch.input_ids`, True at the
    positions to mask.

    Rules, per sequence, each checked by the grader, one test each, in this order:
    - The budget: exactly k = budget(batch.maskable, batch.ratio,
      batch.generator) tokens (masking.budget; draw it first).
    - The model is not needed: do not question it.
    - The weight of a position holding token t is count(t) ** -0.5, so a token
      100 times as frequent as another is about 10 times less likely to be
      drawn first.
    - A token the corpus never shows (count 0, e.g. in a held-out sentence)
      counts as 1.
    - Draw k distinct maskable positions the way one would draw them one by
      one, each time picking among the positions not drawn yet with
      probability proportional to their weights (sampling without
      replacement).
    - With equal counts, every position has the same chance.
    - Draw every random number from batch.generator, so the same seed gives
      the same mask (and another seed another).
    - And, checked first by every test: never select a non-maskable position.

    Not checked by the grader (it runs on the CPU), but what train.py needs:
    draw on the device of batch.input_ids, and no Python loop over tokens or
    sequences. (Hint: one random key per position, e.g. an exponential
    "clock" E / weight with E = -log(1 - U), and the k smallest keys of a row
    are such a draw; rank = keys.argsort(dim=-1).argsort(dim=-1).)
    """
    raise NotImplementedError("exercise 5: write frequency() in this file (see its docstring), then grade it")
