"""Grader of exercise 6 (loss_score.py): the self-questioning loss score s_i = -log p_i(x_i).

The expected scores are computed here by hand in float64 (the row's maximum,
then the log of the sum of exponentials), never with the function under test
or masking.score_tokens. Each test checks one property; the shape and dtype
of what the function returns are checked first, as a precondition, so that a
wrong shape is reported as such and not as wrong values.
"""

import pytest
import torch

from grading import CLS, PAD, SEP, VOCAB, gen, random_rows

EXERCISE = "loss_score"
ATOL, RTOL = 1e-4, 1e-5  # float32 arithmetic is far inside this; bf16 rounding (0.03 near 5) is far outside


def check(holds, message):
    """Fail the test with `message` alone (no traceback, no dump of tensors) unless `holds`."""
    if not holds:
        pytest.fail(message, pytrace=False)


def expected_scores(logits, input_ids):
    """-log p_i(x_i) in float64, by hand: logsumexp with the row's maximum subtracted, minus z_i(x_i)."""
    z = logits.double()
    top = z.max(-1, keepdim=True).values
    log_sum = top.squeeze(-1) + (z - top).exp().sum(-1).log()
    return log_sum - z.gather(-1, input_ids.unsqueeze(-1)).squeeze(-1)


def scores_of(solution, logits, input_ids):
    """The solution's scores, after the precondition: a floating tensor of input_ids' shape."""
    got = solution(logits, input_ids)
    check(isinstance(got, torch.Tensor), f"precondition: return a torch.Tensor, not a {type(got).__name__}")
    check(got.shape == input_ids.shape,
          f"precondition: return input_ids' shape {tuple(input_ids.shape)}, not {tuple(got.shape)}")
    check(got.is_floating_point(), f"precondition: return floating-point scores, not {got.dtype}")
    return got


def token_name(token_id):
    """How a message names a token: [PAD], [CLS], [SEP] or its id."""
    return {PAD: "[PAD]", CLS: "[CLS]", SEP: "[SEP]"}.get(token_id, f"id {token_id}")


def assert_scores(got, want, input_ids, where, prop):
    """got == want (to ATOL + RTOL * |want|) at the positions `where`; else name the first offenders."""
    wrong = where & ~torch.isclose(got.double(), want, atol=ATOL, rtol=RTOL)
    if wrong.any():
        excerpt = ", ".join(f"(row {b}, position {i}, {token_name(int(input_ids[b, i]))}): "
                            f"got {got[b, i].item():.4f}, expected {want[b, i].item():.4f}"
                            for b, i in wrong.nonzero().tolist()[:3])
        pytest.fail(f"{prop}: wrong at {int(wrong.sum())} of {int(where.sum())} positions, "
                    f"first {excerpt}", pytrace=False)


def ordinary(input_ids):
    """Positions holding an ordinary token (grading's ids 0..4 are [PAD], [UNK], [CLS], [SEP], [MASK])."""
    return input_ids >= 5


def random_logits(input_ids, seed, scale=2.0):
    """Normal logits (input_ids' shape, VOCAB), standard deviation `scale`."""
    g = gen(seed)
    return torch.randn(*input_ids.shape, VOCAB, generator=g) * scale


def test_returns_the_shape_of_input_ids(solution):
    ids = random_rows(4, 9, seed=1)
    all_logits = random_logits(ids, 1)
    # (batch, length, vocab) with (batch, length), and (n, vocab) with (n,): the positions projected alone
    for logits, token_ids in [(all_logits, ids), (all_logits[ids != PAD], ids[ids != PAD])]:
        got = solution(logits, token_ids)
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        check(isinstance(got, torch.Tensor) and got.shape == token_ids.shape,
              f"shape: logits {tuple(logits.shape)} with input_ids {tuple(token_ids.shape)} must give "
              f"{tuple(token_ids.shape)}, not {shape}")


def test_returns_float32_for_float32_and_bfloat16_logits(solution):
    ids = random_rows(4, 9, seed=2)
    for dtype in (torch.float32, torch.bfloat16):
        got = scores_of(solution, random_logits(ids, 2).to(dtype), ids)
        check(got.dtype == torch.float32, f"dtype: {dtype} logits must give float32 scores, not {got.dtype}")


def test_scores_are_minus_log_p_of_the_shown_token(solution):
    ids = random_rows(8, 14, seed=3)
    logits = random_logits(ids, 3)
    assert_scores(scores_of(solution, logits, ids), expected_scores(logits, ids), ids, ordinary(ids),
                  "s_i = -log softmax(z_i)[x_i] (softmax over the vocabulary, the last dim)")


def test_a_token_rated_far_below_the_rest_keeps_its_large_score(solution):
    # The shown token's logit lies 20 to 120 below the others: exp(-120) is 0 in float32,
    # so log(softmax) gives inf and log(softmax + eps) gives -log(eps); logsumexp gives the score.
    ids = random_rows(6, 12, seed=4)
    logits = random_logits(ids, 4, scale=0.5)
    gap = 20.0 + 100.0 * torch.rand(ids.shape, generator=gen(5))
    logits.scatter_(-1, ids.unsqueeze(-1), -gap.unsqueeze(-1))
    want = expected_scores(logits, ids)
    assert want[ordinary(ids)].max() > 100  # sanity of the grader
    assert_scores(scores_of(solution, logits, ids), want, ids, ordinary(ids),
                  "large scores (-log p of 20 to 120): no clamping, no epsilon, no underflow to inf")


def test_special_tokens_and_padding_are_scored_like_any_token(solution):
    ids = random_rows(8, 14, seed=6)
    assert (ids == PAD).any() and (ids == CLS).any() and (ids == SEP).any()  # sanity of the grader
    logits = random_logits(ids, 6)
    assert_scores(scores_of(solution, logits, ids), expected_scores(logits, ids), ids, ~ordinary(ids),
                  "[CLS], [SEP] and [PAD] positions score -log p_i(x_i) of their own id (not 0, not NaN)")


def test_logits_at_minus_infinity_leave_the_scores_finite_and_exact(solution):
    ids = random_rows(8, 14, seed=7)
    logits = random_logits(ids, 7)
    ruled_out = torch.rand(logits.shape, generator=gen(8)) < 0.5
    ruled_out.scatter_(-1, ids.unsqueeze(-1), False)  # the shown token stays possible
    logits[ruled_out] = float("-inf")
    got = scores_of(solution, logits, ids)
    nan = (got.isnan() & ordinary(ids)).nonzero().tolist()
    check(not nan, f"-inf logits elsewhere in the row: NaN at (row, position) {nan[:3]}")
    assert_scores(got, expected_scores(logits, ids), ids, ordinary(ids),
                  "-inf logits elsewhere in the row (p = 0 there): the scores must stay exact")


def test_bfloat16_logits_are_scored_in_float32(solution):
    ids = random_rows(8, 14, seed=9)
    logits = random_logits(ids, 9).bfloat16()  # the expected scores use these very bf16 values
    got = scores_of(solution, logits, ids)
    check(got.dtype == torch.float32,
          f"precondition: bfloat16 logits must give float32 scores, not {got.dtype}")
    assert_scores(got, expected_scores(logits, ids), ids, ordinary(ids),
                  "bfloat16 logits: compute in float32 (cast the logits first, not the result)")


@pytest.mark.parametrize("logits_shape, ids_shape", [((3, 7, VOCAB), (3, 6)), ((5, VOCAB), (4,))],
                         ids=["one-position-short", "one-row-short"])
def test_mismatched_shapes_raise_a_value_error_naming_them(solution, logits_shape, ids_shape):
    logits = torch.randn(logits_shape, generator=gen(10))
    ids = torch.randint(5, VOCAB, ids_shape, generator=gen(11))
    try:
        got = solution(logits, ids)
    except ValueError as e:
        named = [", ".join(map(str, s)) for s in (logits_shape, ids_shape)]
        missing = [n for n in named if n not in str(e)]
        check(not missing, f"mismatched shapes: the ValueError {str(e)!r} should name the shapes {missing}")
        return
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 (any other error is the wrong one)
        pytest.fail(f"mismatched shapes: logits {logits_shape} with input_ids {ids_shape} must raise a "
                    f"ValueError, not {type(e).__name__}: {str(e).splitlines()[0][:120]}", pytrace=False)
    got = f"a {tuple(got.shape)} tensor" if isinstance(got, torch.Tensor) else type(got).__name__
    pytest.fail(f"mismatched shapes: logits {logits_shape} with input_ids {ids_shape} must raise a "
                f"ValueError, not return {got}", pytrace=False)
