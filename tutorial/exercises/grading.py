"""What the graders share: a vocabulary small enough to write batches by hand,
models that answer fixed logits, and the checks every exercise must pass.

The graders never call the reference solutions: whatever they expect, they
compute here or in the test itself, in plain (often loop-by-loop) Python, so a
solution is compared with an independent account of the rule.
"""

import torch

from masking import MaskingBatch, budget

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = [PAD, UNK, CLS, SEP, MASK]
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


def logits_with_loss(input_ids, badness):
    """Logits whose loss score -log p_i(x_i) rises with badness[i].

    Every logit is 0 but the shown token's, which is -badness: the lower the
    model rates the token it sees, the worse it reconstructs it.
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


def assert_selection(selected, batch):
    """What every exercise must return: a bool tensor of the input's shape, nothing unmaskable."""
    assert isinstance(selected, torch.Tensor), f"return a torch.Tensor, not a {type(selected).__name__}"
    assert selected.dtype == torch.bool, f"return a bool tensor, not {selected.dtype}"
    assert selected.shape == batch.input_ids.shape, \
        f"return the input's shape {tuple(batch.input_ids.shape)}, not {tuple(selected.shape)}"
    bad = (selected & ~batch.maskable).nonzero().tolist()
    assert not bad, f"selected non-maskable positions (row, position): {bad[:5]}"


def top_k(scores, maskable, k):
    """Per row, the k[b] highest-scoring maskable positions (ties to the lower position), in plain Python."""
    selected = torch.zeros(scores.shape, dtype=torch.bool)
    for b in range(scores.shape[0]):
        candidates = [i for i in range(scores.shape[1]) if maskable[b, i]]
        for i in sorted(candidates, key=lambda i: (-scores[b, i].item(), i))[:int(k[b])]:
            selected[b, i] = True
    return selected


def select_on_random_rows(solution, n_rows, length, seed, ratio, pieces=0.0, mask_seed=None):
    """The solution's selection on random rows with randomly ranked losses, checked to be a valid selection.

    Returns (batch, selection, loss scores, budget); the batch draws from gen(mask_seed), by default
    gen(seed).
    """
    mask_seed = seed if mask_seed is None else mask_seed
    ids = random_rows(n_rows, length, seed, pieces)
    logits = ranked_logits(ids, seed)
    batch = batch_of(ids, logits, ratio=ratio, generator=gen(mask_seed))
    got = solution(batch)
    assert_selection(got, batch)
    return batch, got, loss_scores(ids, logits), budget(batch.maskable, ratio, gen(mask_seed))


def assert_follows_the_rule(solution, expected, what, pieces=0.0):
    """For three seeds and budgets, the solution selects what `expected(batch, loss scores, budget)` says."""
    for seed, ratio in [(1, 0.15), (2, 0.3), (3, 0.5)]:
        batch, got, scores, k = select_on_random_rows(solution, 16, 24, seed, ratio, pieces)
        assert rows(got) == rows(expected(batch, scores, k)), f"ratio {ratio}: {what}"


def assert_the_seed_reproduces(run, other_seeds=range(1, 6)):
    """run(seed) -> selection: the same seed gives the same mask, and some other seed another."""
    assert torch.equal(run(0), run(0))
    assert any(not torch.equal(run(0), run(seed)) for seed in other_seeds)


def rows(selected):
    """The selected positions of each row, as lists: readable assertion messages."""
    return [r.nonzero().flatten().tolist() for r in selected]
