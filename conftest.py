"""Fixtures of the whole test suite (tests/ and the exercises' graders): a tiny BERT
checkpoint with a tokenizer, small corpora, and the graders' --solution option."""

import json
import random
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "tests" / "fixtures" / "parity"

# 101 entries, the vocabulary size of the bert-mlm-tiny fixture.
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("the a one this that cat dog bird fish horse cow city river hill king queen child man woman "
         "sat ran saw ate found lost built made took gave near over under into from with on in at "
         "red old big small green blue quick slow happy dark . , and or but then").split()
PIECES = ["##s", "##ed", "##ing", "##er", "##ly"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """bert-mlm-tiny (2 layers, hidden 32, vocab 101) with a WordPiece vocab.txt."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    for f in ("config.json", "model.safetensors"):
        shutil.copy(FIXTURES / "bert-mlm-tiny" / f, folder)
    vocab = SPECIALS + WORDS + PIECES
    vocab += [f"w{i}" for i in range(101 - len(vocab))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return folder


def write_corpus(path, n_documents=120, seed=0, plurals=False):
    """Documents of short sentences from a tiny grammar: learnable in a few steps.

    With plurals, some nouns are words of two pieces ("cats" = cat ##s)."""
    rng = random.Random(seed)
    nouns, verbs = ["cat", "dog", "bird", "king", "queen", "child"], ["saw", "found", "built", "took"]
    docs = []
    for _ in range(n_documents):
        sentences = []
        for _ in range(rng.randint(2, 5)):
            noun = rng.choice(nouns) + (rng.choice(["", "s"]) if plurals else "")
            sentences.append(f"the {rng.choice(['old', 'big', 'red'])} {noun} {rng.choice(verbs)} "
                             f"a {rng.choice(nouns)} near the {rng.choice(['river', 'hill', 'city'])} .")
        docs.append(" ".join(sentences))
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


@pytest.fixture(scope="session")
def tiny_corpus_plurals(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus-plurals") / "corpus.txt",
                        n_documents=60, plurals=True)


def pytest_addoption(parser):
    # The exercises' graders: python -m pytest tutorial/exercises/test_exercise_span.py --solution my_span.py
    parser.addoption("--solution", default=None, metavar="FILE.py[:FUNCTION]",
                     help="the masking function an exercise's grader grades "
                          "instead of the reference solution")


def write_blimp(root, paradigms):
    """BLiMP files in the original layout under root/blimp/: {UID: (field, [(good, bad), ...])}."""
    folder = root / "blimp"
    folder.mkdir(parents=True, exist_ok=True)
    for uid, (field, pairs) in paradigms.items():
        rows = [{"sentence_good": good, "sentence_bad": bad, "field": field, "linguistics_term": "made_up",
                 "UID": uid, "pairID": str(i)} for i, (good, bad) in enumerate(pairs)]
        (folder / f"{uid}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_blimp(tmp_path_factory):
    """Two made-up paradigms of minimal pairs in the tiny vocabulary."""
    return write_blimp(tmp_path_factory.mktemp("blimp-data"), {
        "noun_number": ("morphology", [("the cat saw a dog .", "the cat saw a dogs ."),
                                       ("a king took the bird .", "a king took the birds ."),
                                       ("the queen found a child .", "the queen found a childs .")]),
        "word_order": ("syntax", [("the old man sat near the hill .", "the old man sat the near hill ."),
                                  ("a big dog ran into the city .", "a big dog ran the into city .")]),
    })


@pytest.fixture
def blimp_files():
    """write_blimp, for a test that writes pairs of its own."""
    return write_blimp
