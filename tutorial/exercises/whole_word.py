"""Exercise 2: mask whole words, the least learned first (whole-word informative masking).

WordPiece cuts rare words into pieces: "sharon" may become "sha ##ron". Mask
only "##ron" and the model reads "sha [MASK]", an easy guess that teaches
little; mask the whole word and it must recall it from the context. BERT's
whole-word masking does this for random masking (train.py --whole-word). Here
you do it for self-questioning: the words the model has learned least go
first.

Grade it:  python -m pytest tutorial/exercises/test_exercise_whole_word.py \
               --solution tutorial/exercises/whole_word.py
Train:     python train.py --preset demo --masking-fn tutorial/exercises/whole_word.py:whole_word \
               --out runs/whole-word
"""

import torch

from masking import MaskingBatch, budget  # noqa: F401 (you will need them)


def whole_word(batch: MaskingBatch) -> torch.Tensor:
    """Select whole words by their highest self-questioning loss, up to the budget.

    Inputs: `batch.scores("loss")`, (batch, length), the loss score
    -log p_i(x_i) of every token (it runs the model on first use);
    `batch.continuation`, a (vocab,) bool table, True for the tokens that
    continue a word ("##x"); so `batch.continuation[batch.input_ids]` says
    which positions continue the word before them.

    Output: a bool tensor of the shape of `batch.input_ids`, True at the
    positions to mask.

    Rules, each checked by the grader, one test each, in this order:
    - Never split a word: its pieces are all selected or none is. A word is a
      maskable token plus the continuation pieces that follow it.
    - The budget: k = budget(batch.maskable, batch.ratio, batch.generator)
      tokens (masking.budget; draw it first, from batch.generator). Take words
      one by one as long as the tokens already taken are fewer than k. So a
      sequence gets at least k tokens, and more only by the pieces of the
      last word taken.
    - Take the words from the highest score down.
    - Equal scores: the earlier word first.
    - A continuation piece right after a non-maskable position (a block cut
      mid-word starts "[CLS] ##ron ...", a sentence pair "... a [SEP] ##ron")
      starts a word of its own: a word never contains or crosses a special
      token.
    - A word's score is the MAXIMUM loss score of its pieces: a word is as
      unlearned as its least-learned piece (not its first piece's score, not
      the mean, not the sum).
    - All of these together, on random rows.
    - The same seed gives the same mask, another seed (another rounding of
      the budget) another.
    - And, checked first by every test: never select a non-maskable position.

    Not checked by the grader, but what train.py needs: no Python loop over
    tokens or sequences. (Hint: cumsum / cummax give every position the
    index of its word's first piece; scatter_reduce gathers a score per word.)
    """
    raise NotImplementedError("exercise 2: write whole_word() in this file (see its docstring), "
                              "then grade it")
