"""Grader of exercise 8 (course.py): MCL's swapped token detection, k maskable positions swapped in pairs.

One test per rule of the starter's docstring, in its order. Each test first
checks the rules before its own as preconditions (their failures start with
"precondition:"), so that a wrong count is reported as the count and not as
the broken pairs it makes. The grader never calls mcl.swap: what it expects it
computes here, row by row. Most rows hold tokens that are all different, so
that which token came from where can be read from the output alone; the test
of the labels adds rows of repeated tokens.
"""

from collections import Counter

import pytest
import torch

from grading import CLS, NAMES, PAD, PRECONDITION, SEP, excerpt, fail, gen

EXERCISE = "course"
ROWS, SPARE = 4000, 0.04  # the uniformity test: rows drawn, and how far a rate may stray (see the test)


# -----------------------------------------------------------------------------
# Rows written here: distinct tokens, or repeated ones by hand


def distinct_rows(segments, n_rows, seed, length=None):
    """Rows [CLS] a.. [SEP] b.. [SEP] [PAD]..: `segments` (one per row, or one for all) gives each segment's
    number of tokens, all different within a row (ids 5..39)."""
    segments = [segments] * n_rows if isinstance(segments[0], int) else segments
    rows = []
    g = gen(seed)
    for parts in segments:
        tokens = (torch.randperm(35, generator=g) + 5).tolist()
        row = [CLS]
        for n in parts:
            row += [tokens.pop() for _ in range(n)] + [SEP]
        rows.append(row)
    length = length or max(map(len, rows))
    return torch.tensor([row + [PAD] * (length - len(row)) for row in rows])


def maskable_of(ids):
    return ~torch.isin(ids, torch.tensor([PAD, CLS, SEP]))


def expected_moves(k, maskable):
    """min(k, the maskable count), rounded down to an even number."""
    m = torch.minimum(k, maskable.sum(-1))
    return m - m % 2


# Rows of 12 maskable tokens (a [SEP] between two segments of 6) and of 7 (4 + 3), with k below, at, above
# the count, odd and even. Within each batch every row has the same maskable count: rows of different
# counts are the last test's.
STANDARD = [((6, 6), [0, 1, 2, 3, 5, 6, 11, 12, 13, 40]), ((4, 3), [1, 2, 6, 7, 8, 30])]


def standard_batches():
    """(what, ids, k, seed) for the tests' usual cases: each layout of STANDARD with two seeds."""
    return [(f"rows of {sum(parts)} maskable tokens, seed {seed}", distinct_rows(parts, len(ks), seed),
             torch.tensor(ks), seed) for parts, ks in STANDARD for seed in (1, 2)]


# -----------------------------------------------------------------------------
# The rules, one check each, in the starter's order


def check_shapes(ids, k, corrupted, labels, what, prefix):
    for name, got, dtype in (("corrupted", corrupted, ids.dtype), ("labels", labels, torch.bool)):
        if not isinstance(got, torch.Tensor):
            fail(f"{prefix}shapes and dtypes: return (corrupted, labels), two tensors; {name} is a "
                 f"{type(got).__name__}")
        if got.shape != ids.shape or got.dtype != dtype:
            fail(f"{prefix}shapes and dtypes: {name} must be a {dtype} tensor of input_ids' shape "
                 f"{tuple(ids.shape)}, not a {got.dtype} tensor of shape {tuple(got.shape)} ({what})")


def listed(items, limit=4):
    """Items as text, "a, b, c", the first `limit` and how many more."""
    items = [str(item) for item in items]
    return ", ".join(items[:limit]) + (f", ... {len(items) - limit} more" if len(items) > limit else "")


def token_list(counter):
    """Tokens with their counts: "[SEP], id 12 x2"."""
    return listed(NAMES.get(t, f"id {t}") + (f" x{n}" if n > 1 else "") for t, n in counter.items())


def check_permutation(ids, k, corrupted, labels, what, prefix):
    for b in range(len(ids)):
        before, after = Counter(ids[b].tolist()), Counter(corrupted[b].tolist())
        if before != after:
            fail(f"{prefix}the row keeps its tokens (a permutation: none copied, none lost): row {b} "
                 f"(k = {int(k[b])}) lost {token_list(before - after)} and gained "
                 f"{token_list(after - before)} "
                 f"({what})")


def check_unchanged(ids, k, corrupted, labels, what, prefix):
    moved = (corrupted != ids) & ~maskable_of(ids)
    if moved.any():
        b = int(moved.any(-1).nonzero()[0])
        where = [f"{i} ({NAMES.get(int(ids[b, i]), int(ids[b, i]))} -> id {int(corrupted[b, i])})"
                 for i in moved[b].nonzero().flatten().tolist()]
        fail(f"{prefix}only maskable positions move ([CLS], [SEP] and padding keep their tokens): row {b} "
             f"changed position {listed(where, 3)} ({what})")


def check_count(ids, k, corrupted, labels, what, prefix):
    """The rows hold distinct tokens: a moved position is one whose token changed."""
    want, got = expected_moves(k, maskable_of(ids)), (corrupted != ids).sum(-1)
    differ = (got != want).nonzero().flatten().tolist()
    if differ:
        b = differ[0]
        n = int(maskable_of(ids)[b].sum())
        fail(f"{prefix}the number moved is min(k, maskable count) rounded down to an even number: row {b} "
             f"(k = {int(k[b])}, {n} maskable) moved {int(got[b])}, expected {int(want[b])} "
             f"({len(differ)} of {len(ids)} rows differ; {what})")


def sources(ids_row, corrupted_row):
    """Where each maskable position's token came from, in a row whose maskable tokens are all different (the
    preconditions: only they move, and the row keeps its tokens): {position: source}."""
    maskable = maskable_of(ids_row).tolist()
    at = {t: i for i, (t, m) in enumerate(zip(ids_row.tolist(), maskable)) if m}
    return {j: at[t] for j, (t, m) in enumerate(zip(corrupted_row.tolist(), maskable)) if m}


def check_pairs(ids, k, corrupted, labels, what, prefix):
    for b in range(len(ids)):
        source = sources(ids[b], corrupted[b])
        for j, i in source.items():
            if source[i] != j:
                fail(f"{prefix}moved tokens change places in pairs: row {b} (k = {int(k[b])}), position {j} "
                     f"took the token of position {i}, but position {i} took that of position {source[i]}, "
                     f"not {j}'s (a cycle or a shift, not a swap; {what})")


def check_labels(ids, k, corrupted, labels, what, prefix):
    wrong = labels != (corrupted != ids)
    if wrong.any():
        b = int(wrong.any(-1).nonzero()[0])
        unchanged = (wrong[b] & labels[b]).nonzero().flatten().tolist()
        changed = (wrong[b] & ~labels[b]).nonzero().flatten().tolist()
        said = (f"positions {excerpt(unchanged, 4)} labelled True hold their original token (two equal "
                f"tokens swapped change nothing: False)" if unchanged else
                f"positions {excerpt(changed, 4)} changed but are labelled False")
        fail(f"{prefix}labels are exactly corrupted != input_ids: row {b} (k = {int(k[b])}): {said} ({what})")


RULES = [check_shapes, check_permutation, check_unchanged, check_count, check_pairs, check_labels]


def call(solution, ids, k, seed, what):
    """The solution's (corrupted, labels) on copies of the inputs; an error is reported, not dumped."""
    error = None
    try:
        out = solution(ids.clone(), maskable_of(ids), k.clone(), gen(seed))
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 (any error is reported in one line, after the except block)
        error = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    if error is not None:
        fail(f"{what}: the function raised {error}")
    if not (isinstance(out, tuple) and len(out) == 2):
        fail(f"{PRECONDITION}shapes and dtypes: return a tuple (corrupted, labels), not a "
             f"{type(out).__name__}")
    return out


def swapped(solution, ids, k, seed, what, rules=len(RULES), prefix=PRECONDITION):
    """The solution's output, checked against the first `rules` rules (with `prefix`)."""
    corrupted, labels = call(solution, ids, k, seed, what)
    for check in RULES[:rules]:
        check(ids, k, corrupted, labels, what, prefix)
    return corrupted, labels


def assert_rule(solution, number, batches=None):
    """Rule `number` (0-based) on the standard batches, the rules before it as preconditions."""
    for what, ids, k, seed in batches or standard_batches():
        corrupted, labels = swapped(solution, ids, k, seed, what, rules=number)
        RULES[number](ids, k, corrupted, labels, what, prefix="")


# -----------------------------------------------------------------------------
# The tests


def test_returns_corrupted_ids_and_bool_labels_of_the_input_shape(solution):
    assert_rule(solution, 0)


def test_the_row_keeps_its_tokens(solution):
    assert_rule(solution, 1)


def test_only_maskable_positions_move(solution):
    assert_rule(solution, 2)


def test_moves_k_capped_and_rounded_down_to_even(solution):
    assert_rule(solution, 3)


def test_moved_tokens_change_places_in_pairs(solution):
    assert_rule(solution, 4)


def test_labels_are_exactly_where_the_token_changed(solution):
    assert_rule(solution, 5)
    # Repeated tokens: here a moved token may equal the one it replaced. Row 0 has one token five times
    # (every swap is of equal tokens: no label); the others, two pairs of equal tokens and one more.
    ids = torch.tensor([[CLS, 7, 7, 7, 7, 7, SEP]] + [[CLS, 7, 7, 8, 8, 9, SEP]] * 15)
    k = torch.tensor([4] + [2, 4, 4] * 5)
    for seed in range(5):
        what = f"rows of repeated tokens, seed {seed}"
        # the count and the pairs are read from distinct tokens: only the rules before them apply here
        corrupted, labels = swapped(solution, ids, k, seed, what, rules=3)
        check_labels(ids, k, corrupted, labels, what, prefix="")


def test_every_maskable_position_moves_equally_often(solution):
    # 4 of 12 maskable positions move in every row: each position with probability 1/3. Over 4000 rows a
    # position's rate has a standard deviation of sqrt(1/3 * 2/3 / 4000) = 0.0075; SPARE, 0.04, is over 5 of
    # them (a right solution strays that far with probability below 1e-6 per position, and the seed is
    # fixed), while any rule that favours positions (the first ones, one segment) misses by far more.
    ids = distinct_rows((6, 6), ROWS, seed=3)
    k = torch.full((ROWS,), 4)
    what = f"{ROWS} rows of 12 maskable tokens, k = 4"
    corrupted, _ = swapped(solution, ids, k, 4, what)
    rate = (corrupted != ids).double().mean(0)
    maskable = maskable_of(ids)[0]
    off = ((rate - 4 / 12).abs() > SPARE) & maskable
    if off.any():
        worst = max(off.nonzero().flatten().tolist(), key=lambda i: abs(rate[i] - 4 / 12))
        fail(f"every maskable position moves equally often (drawn uniformly, each row its own draw): over "
             f"{what}, position {worst} moved in {rate[worst]:.1%} of the rows, expected 33.3% (within "
             f"{SPARE:.0%}); rates of positions {maskable.nonzero().flatten().tolist()}: "
             f"{listed([f'{r:.0%}' for r in rate[maskable].tolist()], 12)}")


def test_the_seed_reproduces_the_swaps(solution):
    ids, k = distinct_rows((6, 6), 16, seed=5), torch.full((16,), 6)
    run = [swapped(solution, ids, k, seed, f"16 rows, seed {seed}")[0] for seed in (0, 0, 1, 2, 3)]
    if not torch.equal(run[0], run[1]):
        b = int((run[0] != run[1]).any(-1).nonzero()[0])
        fail(f"the same seed gives the same swaps (draw every random number from `generator`): with seed 0 "
             f"row {b} moved positions {excerpt((run[0][b] != ids[b]).nonzero().flatten().tolist())}, then "
             f"{excerpt((run[1][b] != ids[b]).nonzero().flatten().tolist())}")
    if all(torch.equal(run[0], other) for other in run[2:]):
        fail("another seed gives other swaps (draw from `generator`, not a fixed order): seeds 0, 1, 2 and 3 "
             "moved the same positions in every row")


@pytest.mark.parametrize("seed", [6, 7])
def test_rows_with_different_maskable_counts(solution, seed):
    # Maskable counts 0, 1, 2, 3, 7 (with padding), 12, 5 (4 + 1 around a [SEP]) in one batch.
    segments = [(0,), (1,), (2,), (3,), (3, 4), (6, 6), (4, 1)]
    ids = distinct_rows(segments, len(segments), seed, length=16)
    k = torch.tensor([3, 5, 2, 3, 9, 4, 5])
    what = "rows with different maskable counts (0, 1, 2, 3, 7, 12, 5)"
    swapped(solution, ids, k, seed, what, prefix=f"{what}: ")
