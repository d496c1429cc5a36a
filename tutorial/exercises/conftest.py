"""The graders' fixture: which function they grade (the tiny model and corpus are in ../../conftest.py).

Every grader grades the reference solution in solutions/ unless you name your
own file:

    python -m pytest tutorial/exercises/test_exercise_span.py --solution my_span.py

`--solution FILE.py` grades the function of FILE.py named like the exercise
(`span` for the span grader); `--solution FILE.py:FUNCTION` grades FUNCTION.
"""

from pathlib import Path

import pytest

from masking import load_masking_fn

HERE = Path(__file__).resolve().parent


def solution_spec(config, exercise):
    """The FILE.py:FUNCTION that the grader of `exercise` grades."""
    given = config.getoption("--solution")  # registered in the repository's conftest.py
    if given is None:
        return f"{HERE / 'solutions' / exercise}.py:{exercise}"
    return f"{given}:{exercise}" if given.endswith(".py") else given


@pytest.fixture
def solution(request):
    """The function under test; each grader names its exercise in a module-level EXERCISE."""
    try:
        return load_masking_fn(solution_spec(request.config, request.module.EXERCISE))
    except (ValueError, FileNotFoundError) as e:
        pytest.fail(f"--solution {str(e).removeprefix('--masking-fn ')}", pytrace=False)


@pytest.fixture
def solution_of(request):
    """solution_spec for a test that grades several exercises (the training check)."""
    return lambda exercise: solution_spec(request.config, exercise)
