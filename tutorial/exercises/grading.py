"""What the graders share: a vocabulary small enough to write batches by hand,
models that answer fixed logits, and the checks every exercise must pass.

The graders never call the reference solutions: whatever they expect, they
compute here or in the test itself, in plain (often loop-by-loop) Python, so a
solution is compared with an independent account of the rule.

How a grader reports (the conventions of every test_exercise_*.py):
- Each test checks ONE property of the rule, and its failure message starts
  with that property, then names the offending row and positions: a short
  excerpt, never a whole tensor.
- What a test needs before its property can be judged (a bool tensor of the
  right shape, nothing outside `maskable`, the right number of tokens) is
  checked first, by the helpers below, and a failure there starts with
  "precondition:": a wrong budget is reported as the budget, not as the wrong
  tokens that it makes.
- Failures go through `fail`, pytest.fail without a traceback: the message is
  the report.
"""

import pytest
import torch

from masking import MaskingBatch, budget

PRECONDITION = "precondition: "

# -----------------------------------------------------------------------------
# 1. A vocabulary, batches and "models" written by hand

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = [PAD, UNK, CLS, SEP, MASK]
NAMES = {PAD: "[PAD]", UNK: "[UNK]", CLS: "[CLS]", SEP: "[SEP]", MASK: "[MASK]"}
VOCAB = 40
FIRST_PIECE = 30  # ids 5..29 start a word, ids 30..39 continue one ("##x")
CONTINUATION = torch.arange(VOCAB) >= FIRST_PIECE


def gen(seed):
    return torch.Generator().manual_seed(seed)


def maskable_of(input_ids):
    return ~torch.isin(input_ids, torch.tensor(SPECIALS))


def batch_of(input_ids, logits=None, **fields):
    """A MaskingBatch of `input_ids` whose model answers `logits` when questioned.

    `batch.calls` counts the questions, so a grader can tell whether the
    function ran the model at all.
    """
    calls = []

    def question(ids):
        calls.append(ids)
        if logits is None:
            raise AssertionError("this grader's batch has no model to question")
        return logits

    fields.setdefault("generator", gen(0))
    fields.setdefault("continuation", CONTINUATION)
    batch = MaskingBatch(input_ids, maskable_of(input_ids), question=question, **fields)
    batch.calls = calls
    return batch


def random_rows(n_rows, length, seed, pieces=0.0):
    """[CLS] tokens [SEP] [PAD]... with lengths from 3 to `length`; `pieces` of the tokens are "##x"."""
    g = gen(seed)
    ids = torch.randint(5, FIRST_PIECE, (n_rows, length), generator=g)
    piece = torch.rand(n_rows, length, generator=g) < pieces
    ids = torch.where(piece, torch.randint(FIRST_PIECE, VOCAB, (n_rows, length), generator=g), ids)
    lengths = torch.randint(3, length + 1, (n_rows,), generator=g)
    ids[:, 0] = CLS
    ids[torch.arange(n_rows), lengths - 1] = SEP
    ids[torch.arange(length) >= lengths.unsqueeze(1)] = PAD
    return ids


def full_rows(n_rows, n_tokens, seed):
    """[CLS] + n_tokens ordinary tokens + [SEP]: every row has n_tokens maskable tokens."""
    ids = torch.randint(5, FIRST_PIECE, (n_rows, n_tokens + 2), generator=gen(seed))
    ids[:, 0], ids[:, -1] = CLS, SEP
    return ids


def logits_with_loss(input_ids, badness):
    """Logits whose loss score -log p_i(x_i) rises with badness[i].

    Every logit is 0 but the shown token's, which is -badness: the lower the
    model rates the token it sees, the worse it reconstructs it. Two positions
    holding the same token with the same badness get identical logits, hence
    exactly equal scores (the graders' ties).
    """
    logits = torch.zeros(*input_ids.shape, VOCAB)
    return logits.scatter(-1, input_ids.unsqueeze(-1), -badness.float().unsqueeze(-1))


def ranked_logits(input_ids, seed):
    """logits_with_loss with a different badness at every position (a random permutation per row): no ties
    to break."""
    g = gen(seed)
    badness = torch.stack([torch.randperm(input_ids.shape[1], generator=g)
                           for _ in range(input_ids.shape[0])])
    return logits_with_loss(input_ids, badness)


def loss_scores(input_ids, logits):
    """-log p_i(x_i) in float64."""
    logp = torch.log_softmax(logits.double(), -1)
    return -logp.gather(-1, input_ids.unsqueeze(-1)).squeeze(-1)


def top_k(scores, maskable, k):
    """Per row, the k[b] highest-scoring maskable positions (ties to the lower position), in plain Python."""
    selected = torch.zeros(scores.shape, dtype=torch.bool)
    for b in range(scores.shape[0]):
        candidates = [i for i in range(scores.shape[1]) if maskable[b, i]]
        for i in sorted(candidates, key=lambda i: (-scores[b, i].item(), i))[:int(k[b])]:
            selected[b, i] = True
    return selected


# -----------------------------------------------------------------------------
# 2. Reporting: one line that names the property, the row and the positions


def fail(message):
    """Fail the test with `message` alone: no traceback, no dump of the tensors involved."""
    pytest.fail(message, pytrace=False)


def excerpt(items, limit=8):
    """A list shown whole when short, else its first `limit` items and how many more."""
    items = list(items)
    if len(items) <= limit:
        return str(items)
    return "[" + ", ".join(map(str, items[:limit])) + f", ... {len(items) - limit} more]"


def positions(selected_row):
    """The True positions of one row, as a list."""
    return selected_row.nonzero().flatten().tolist()


def tokens(n):
    """"1 token", "3 tokens"."""
    return f"{int(n)} token{'' if int(n) == 1 else 's'}"


def rows(selected):
    """The selected positions of each row, as lists."""
    return [positions(r) for r in selected]


def named(where, ids_row):
    """Positions with the tokens they hold named: "0 ([CLS]), 7 ([SEP])"."""
    return ", ".join(f"{i} ({NAMES.get(int(ids_row[i]), 'id ' + str(int(ids_row[i])))})" for i in where)


def check_rows(got, want, what):
    """got == want row by row; else `what`, then the first row that differs: what it has, what it lacks."""
    differ = (got != want).any(-1).nonzero().flatten().tolist()
    if differ:
        b = differ[0]
        fail(f"{what}: row {b} selects {excerpt(positions(got[b]))}, expected {excerpt(positions(want[b]))} "
             f"(extra {excerpt(positions(got[b] & ~want[b]), 4)}, missing "
             f"{excerpt(positions(want[b] & ~got[b]), 4)}; {len(differ)} of {len(got)} rows differ)")


# -----------------------------------------------------------------------------
# 3. Preconditions: what every selection must be before its rule is judged


def check_type(selected, batch, prefix=PRECONDITION):
    """A bool tensor of the input's shape."""
    if not isinstance(selected, torch.Tensor):
        fail(f"{prefix}return a torch.Tensor, not a {type(selected).__name__}")
    if selected.dtype != torch.bool or selected.shape != batch.input_ids.shape:
        fail(f"{prefix}return a bool tensor of the input's shape {tuple(batch.input_ids.shape)}, not a "
             f"{selected.dtype} tensor of shape {tuple(selected.shape)}")


def check_selection(selected, batch, prefix=PRECONDITION):
    """A bool tensor of the input's shape, nothing outside `maskable`."""
    check_type(selected, batch, prefix)
    bad = selected & ~batch.maskable
    if bad.any():
        b = bad.any(-1).nonzero()[0].item()
        fail(f"{prefix}never select a non-maskable position ([CLS], [SEP], padding): row {b} selects "
             f"{named(positions(bad[b])[:4], batch.input_ids[b])}")


def budget_hint(counts, k, n, ratio):
    """Why counts may differ from the budget k, when the counts show it."""
    exact = n.double() * ratio
    for name, rounded in (("floor", exact.floor()), ("round", exact.round()), ("ceil", exact.ceil())):
        if torch.equal(counts, rounded.long()):
            return (f"; these are {name}(n * ratio), rounded without the random draw of masking.budget, "
                    f"floor(n * ratio + U)")
    diff = counts - k
    if diff.eq(1).any() and (diff.eq(1) | k.eq(n)).all():
        return "; off by one: one more than the budget in every row that has a token to spare"
    if diff.eq(-1).any() and (diff.eq(-1) | k.eq(0)).all():
        return "; off by one: one fewer than the budget in every row that has one"
    return ("; draw it with masking.budget(batch.maskable, batch.ratio, batch.generator), "
            "before any other draw")


def check_budget(selected, batch, k, prefix=PRECONDITION):
    """Exactly k[b] tokens in row b, k drawn by masking.budget first from the batch's generator."""
    counts = selected.sum(-1)
    differ = (counts != k).nonzero().flatten().tolist()
    if differ:
        b = differ[0]
        hint = budget_hint(counts, k, batch.maskable.sum(-1), batch.ratio)
        fail(f"{prefix}the budget: row {b} selects {tokens(counts[b])}, masking.budget gives {int(k[b])} "
             f"({len(differ)} of {len(counts)} rows differ{hint})")


def budget_of(batch, seed):
    """The budget a solution must draw: masking.budget from a generator seeded like the batch's."""
    return budget(batch.maskable, batch.ratio, gen(seed))


def select(solution, batch, k=None, prefix=PRECONDITION):
    """The solution's selection for `batch`, checked to be a valid selection (and of exactly k tokens)."""
    selected = solution(batch)
    check_selection(selected, batch, prefix)
    if k is not None:
        check_budget(selected, batch, k, prefix)
    return selected


def select_on_random_rows(solution, n_rows, length, seed, ratio, pieces=0.0, mask_seed=None, check=None):
    """The solution's selection on random rows with randomly ranked losses, checked to be a valid selection.

    Returns (batch, selection, loss scores, budget); the batch draws from gen(mask_seed), by default
    gen(seed). `check(selection, batch, budget)` adds an exercise's own preconditions.
    """
    mask_seed = seed if mask_seed is None else mask_seed
    ids = random_rows(n_rows, length, seed, pieces)
    logits = ranked_logits(ids, seed)
    batch = batch_of(ids, logits, ratio=ratio, generator=gen(mask_seed))
    k = budget_of(batch, mask_seed)
    got = select(solution, batch)
    if check is not None:
        check(got, batch, k)
    return batch, got, loss_scores(ids, logits), k


def assert_follows_the_rule(solution, expected, what, pieces=0.0, check=None):
    """For three seeds and budgets, the solution selects what `expected(batch, loss scores, budget)` says."""
    for seed, ratio in [(1, 0.15), (2, 0.3), (3, 0.5)]:
        batch, got, scores, k = select_on_random_rows(solution, 16, 24, seed, ratio, pieces, check=check)
        check_rows(got, expected(batch, scores, k), f"{what} (ratio {ratio}, rows of seed {seed})")


# -----------------------------------------------------------------------------
# 4. Seeds: the generator is the only source of chance


def assert_the_seed_reproduces(run, other_seeds=range(1, 6)):
    """run(seed) -> selection: the same seed gives the same mask, and some other seed another."""
    first, again = run(0), run(0)
    if not torch.equal(first, again):
        b = (first != again).any(-1).nonzero()[0].item()
        fail(f"the same seed must give the same mask (draw every random number from batch.generator): "
             f"with seed 0 row {b} selected {excerpt(positions(first[b]))}, "
             f"then {excerpt(positions(again[b]))}")
    others = list(other_seeds)
    if all(torch.equal(first, run(seed)) for seed in others):
        fail(f"another seed must give another mask (the budget's rounding draws from batch.generator): "
             f"seeds 0 and {excerpt(others, 5)} all gave the same")
