"""The graders' fixtures: which function they grade, and a tiny model to train with it.

Every grader grades the reference solution in solutions/ unless you name your
own file:

    python -m pytest tutorial/exercises/test_exercise_span.py --solution my_span.py

`--solution FILE.py` grades the function of FILE.py named like the exercise
(`span` for the span grader); `--solution FILE.py:FUNCTION` grades FUNCTION.
"""

import random
import shutil
from pathlib import Path

import pytest

from masking import load_masking_fn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def pytest_addoption(parser):
    # pytest honours this only when it starts from this folder or a file in it
    # (an "initial" conftest). Run from elsewhere, the option does not exist
    # and solution_spec falls back to the reference solutions.
    parser.addoption("--solution", default=None, metavar="FILE.py[:FUNCTION]",
                     help="the masking function to grade instead of the reference solution")


def solution_spec(config, exercise):
    """The FILE.py:FUNCTION that the grader of `exercise` grades."""
    given = config.getoption("--solution", default=None)
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


# -----------------------------------------------------------------------------
# A tiny BERT and corpus for the training check. tests/conftest.py builds the
# same ones, but fixtures are visible only in their own folder.

WORDS = ("the a one this that cat dog bird fish horse cow city river hill king queen child man woman "
         "sat ran saw ate found lost built made took gave near over under into from with on in at "
         "red old big small green blue quick slow happy dark . , and or but then").split()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """bert-mlm-tiny (2 layers, hidden 32, vocab 101) with a WordPiece vocab.txt."""
    folder = tmp_path_factory.mktemp("exercise-bert")
    for f in ("config.json", "model.safetensors"):
        shutil.copy(ROOT / "tests" / "fixtures" / "parity" / "bert-mlm-tiny" / f, folder)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + ["##s", "##ed", "##ing", "##er", "##ly"]
    vocab += [f"w{i}" for i in range(101 - len(vocab))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return folder


@pytest.fixture(scope="session")
def tiny_text(tmp_path_factory):
    """Short sentences; plurals ("cats" = cat ##s) give the whole-word exercise words of two pieces."""
    rng = random.Random(0)
    nouns, verbs = ["cat", "dog", "bird", "king", "queen", "child"], ["saw", "found", "built", "took"]
    docs = []
    for _ in range(60):
        docs.append(" ".join(f"the {rng.choice(['old', 'big', 'red'])} {rng.choice(nouns)}{rng.choice(['', 's'])} "
                             f"{rng.choice(verbs)} a {rng.choice(nouns)} near the {rng.choice(['river', 'hill', 'city'])} ."
                             for _ in range(rng.randint(2, 4))))
    path = tmp_path_factory.mktemp("exercise-corpus") / "corpus.txt"
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path
