"""Exercise 8: write a course, MCL's swapped token detection (STD).

ELECTRA's discriminator D learns from every token, but most of its labels say
"original": only the 15% that the generator replaced can be positive. MCL
(Chen et al. 2023; tutorial chapter 11) adds courses, other ways to corrupt a
sentence, so that D reads more positives and other kinds of them. In STD a
few tokens of the sentence change places in pairs: every word D reads is a
real word of the sentence, and D must tell from its position alone whether it
belongs there. mcl.swap is the project's version (it returns where each token
came from instead of labels); here you write the course yourself, without it.

Grade it:  python -m pytest tutorial/exercises/test_exercise_course.py \
               --solution tutorial/exercises/course.py
"""

import torch


def course(input_ids: torch.Tensor, maskable: torch.Tensor, k: torch.Tensor,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """STD's corruption and D's labels: in each row, k[b] maskable positions change places in pairs.

    Input:
    - `input_ids`, (batch, length) int64: the sentences, [CLS] ... [SEP] and
      padding included.
    - `maskable`, (batch, length) bool: the positions a course may change
      (False at [CLS], [SEP], padding and the other special tokens).
    - `k`, (batch,) int64: how many positions of row b to move.
    - `generator`: the torch.Generator to draw every random number from.

    Output: (corrupted, labels), both (batch, length): `corrupted`, int64, the
    swapped ids; `labels`, bool, D's label, True where the token changed.

    Rules, per row, each checked by the grader (one test each, in this order):
    - Shapes and dtypes: corrupted has input_ids' shape and dtype, labels is a
      bool tensor of that shape.
    - The row keeps its tokens: corrupted[b] is a permutation of
      input_ids[b], no token copied, none lost.
    - Only maskable positions move: a non-maskable position keeps its token.
    - The number moved: min(k[b], the row's maskable count), rounded down to
      an even number (k = 5 of 12 moves 4; k = 9 of 7 moves 6; k = 1 moves
      none).
    - Pairs: the moved positions form pairs, and the two positions of a pair
      exchange their tokens (no cycle of three or more, no shift).
    - Labels: exactly corrupted != input_ids. Two equal tokens that swap
      change nothing, so their positions are labelled False, as a sample
      equal to the original is "original" in ELECTRA.
    - Uniform: the moved positions are drawn uniformly among the row's
      maskable positions, each row its own draw: over many rows, every
      maskable position moves equally often.
    - The same generator seed gives the same result; another seed, another.
    - A batch whose rows have different maskable counts (0, 1, 2, 3, ...,
      padding, a [SEP] between two segments) follows every rule row by row.

    Not checked by the grader, but what training needs: no Python loop over
    tokens or rows. (Hint: a random key per position, -1 where not maskable;
    order = keys.argsort(dim=-1, descending=True) lists the positions in the
    order drawn, and the r-th drawn can pair with the (r ^ 1)-th.)
    """
    raise NotImplementedError("exercise 8: write course() in this file (see its docstring), then grade it")
