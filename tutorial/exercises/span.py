"""Exercise 3: mask a short span around each informative token (informative span masking).

A masked token next to an unmasked neighbour can often be guessed from that
neighbour alone ("New [MASK]" -> "York"). SpanBERT masks contiguous spans so
the model has to use the wider context. Here the spans grow around the tokens
self-questioning finds hardest: fewer seeds, each with a token of context on
either side.

Grade it:  python -m pytest tutorial/exercises/test_exercise_span.py --solution tutorial/exercises/span.py
Train:     python train.py --preset demo --masking-fn tutorial/exercises/span.py:span --out runs/span
"""

import torch

from masking import MaskingBatch, budget  # noqa: F401 (you will need them)


def span(batch: MaskingBatch) -> torch.Tensor:
    """Select the top-scoring tokens as seeds and extend each by one token on each side, within the budget.

    Input: `batch.scores("loss")`, (batch, length), the loss score
    -log p_i(x_i) of every token (it runs the model on first use).

    Output: a bool tensor of the shape of `batch.input_ids`, True at the
    positions to mask.

    Rules, per sequence, each checked by the grader:
    - The budget: k = budget(batch.maskable, batch.ratio, batch.generator)
      (masking.budget; draw it first, from batch.generator).
    - Seeds: the ceil(k / 3) maskable tokens with the highest loss scores
      (equal scores: the lower position first).
    - Neighbours: the maskable tokens right before or right after a seed that
      are not seeds themselves.
    - Select every seed, and fill the rest of the budget, k minus the seeds,
      with neighbours, highest loss score first (equal scores: the lower
      position first). Where there are fewer neighbours than that (seeds
      side by side, a seed next to [SEP]), the sequence gets fewer than k
      tokens.

    What the grader checks, one test each, in this order:
    - Never select a non-maskable position ([CLS], [SEP], padding).
    - A seed next to [CLS] or [SEP] grows inwards only.
    - A span never wraps around from the end of a row to its start.
    - Never more than k tokens.
    - Every seed is selected.
    - Every selected token is a seed or right next to one.
    - The rest of the budget goes to the neighbours with the highest scores.
    - Equal scores go to the lower position, among seeds and neighbours alike.
    - All of these together, on random rows.
    - The same seed gives the same mask, another seed another.

    Not checked by the grader, but what train.py needs: no Python loop over
    tokens or sequences. (Hint: a rank per row,
    rank = keys.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1),
    turns "the top k[b] of row b" into rank < k.unsqueeze(-1).)
    """
    raise NotImplementedError("exercise 3: write span() in this file (see its docstring), then grade it")
