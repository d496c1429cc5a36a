"""The graders, graded: each catches the wrong solutions it was written against, and names their bug.

Three kinds of solution files, found here by name, so that a new exercise's
files join without a change to this file:

- wrong/<exercise>/<bug>.py: a plausible wrong solution. Its module
  docstring's first line says the bug in words, and a line
  `Fails: <text>` gives a piece of the failure message the grader must print
  for it. The grader runs with -x, so <text> must be in the FIRST failure: a
  wrong solution told another cause than its own is a grader bug.
- alternatives/<exercise>.py: a right solution written differently from
  solutions/<exercise>.py. Every test of its grader must pass.
- <exercise>.py, the starter beside test_exercise_<exercise>.py: it must
  fail every test of its grader with its NotImplementedError.

Each file is graded the way a student grades theirs,
`python -m pytest tutorial/exercises/test_exercise_<exercise>.py --solution FILE`.
To keep this quick, one child process runs all those pytest sessions one
after the other (pytest.main, torch imported once), and the tests below read
its results.
"""

import ast
import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXERCISES = sorted(p.stem.removeprefix("test_exercise_") for p in HERE.glob("test_exercise_*.py"))
MIN_WRONG = 3  # wrong solutions per exercise, at least


def case(kind, exercise, path):
    return pytest.param({"kind": kind, "exercise": exercise, "file": str(path)},
                        id=f"{kind}:{path.relative_to(HERE)}")


CASES = ([case("wrong", p.parent.name, p) for p in sorted(HERE.glob("wrong/*/*.py"))]
         + [case("alternative", p.stem, p) for p in sorted(HERE.glob("alternatives/*.py"))]
         + [case("starter", e, HERE / f"{e}.py") for e in EXERCISES])


# -----------------------------------------------------------------------------
# The child process: grade each file with its exercise's grader, keep the outcome and the output


# Plugins a grading session does without: random test order (the graders' order is their report's), the
# cache, and the hunts for unraisable exceptions, whose gc.collect() with torch loaded costs 0.7 s a
# session; pytest-benchmark's git calls.
QUIET_PLUGINS = ["-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:unraisableexception",
                 "-p", "no:threadexception", "-p", "no:benchmark"]


def grade_all(jobs):
    """{file: {"rc": pytest's exit code, "output": what it printed}} for each job, one pytest session each."""
    results = {}
    for job in jobs:
        grader = HERE / f"test_exercise_{job['exercise']}.py"
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            # -x: a wrong solution's first failure must name its bug. A starter runs every test, each of
            # which must fail.
            stop = [] if job["kind"] == "starter" else ["-x"]
            rc = pytest.main(["-q", *stop, *QUIET_PLUGINS, str(grader), "--solution", job["file"]])
        results[job["file"]] = {"rc": int(rc), "output": printed.getvalue()}
    return results


# -----------------------------------------------------------------------------
# The tests


@pytest.fixture(scope="module")
def graded(request, tmp_path_factory):
    """Grade, in one child process, the files of the tests selected in this session (all by default)."""
    mine = [item for item in request.session.items
            if item.path == Path(__file__) and hasattr(item, "callspec")]
    selected = [item.callspec.params["job"] for item in mine if "job" in item.callspec.params]
    folder = tmp_path_factory.mktemp("graders")
    jobs, results = folder / "jobs.json", folder / "results.json"
    jobs.write_text(json.dumps(selected))
    child = subprocess.run([sys.executable, __file__, str(jobs), str(results)], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    if child.returncode != 0:
        pytest.fail(f"the grading process failed (exit {child.returncode}): {child.stderr[-2000:]}",
                    pytrace=False)
    return json.loads(results.read_text())


def report(output, lines=12):
    """The end of a grader's output, where its failure messages and summary are."""
    return "\n".join(output.strip().splitlines()[-lines:])


def promise(path):
    """(the bug in words, the Fails: text) of a wrong solution's docstring."""
    doc = ast.get_docstring(ast.parse(Path(path).read_text(encoding="utf-8"))) or ""
    fails = [line.removeprefix("Fails:").strip() for line in doc.splitlines() if line.startswith("Fails:")]
    return doc.splitlines()[0].strip() if doc else "", fails[0] if fails else ""


@pytest.mark.parametrize("job", CASES)
def test_the_grader_judges_the_file(job, graded):
    name = Path(job["file"]).relative_to(HERE)
    if not (HERE / f"test_exercise_{job['exercise']}.py").is_file():
        pytest.fail(f"{name}: no grader test_exercise_{job['exercise']}.py for it", pytrace=False)
    result = graded[job["file"]]
    if job["kind"] == "alternative" and result["rc"] != 0:
        pytest.fail(f"{name}, a right solution, fails its grader:\n{report(result['output'])}", pytrace=False)
    if job["kind"] == "starter" and (result["rc"] != 1 or "NotImplementedError" not in result["output"]
                                     or re.search(r"\d+ passed", result["output"])):
        pytest.fail(f"{name}, the starter, must fail every test of its grader with NotImplementedError:\n"
                    f"{report(result['output'])}", pytrace=False)
    if job["kind"] == "wrong":
        bug, fails = promise(job["file"])
        if not bug or not fails:
            pytest.fail(f"{name}: its docstring must start with the bug and hold a line 'Fails: <text>'",
                        pytrace=False)
        if result["rc"] != 1:
            pytest.fail(f"{name} ({bug}) is not failed by its grader (exit {result['rc']}):\n"
                        f"{report(result['output'])}", pytrace=False)
        if fails not in result["output"]:
            pytest.fail(f"{name} ({bug}): the grader's first failure does not say {fails!r}:\n"
                        f"{report(result['output'])}", pytrace=False)


@pytest.mark.parametrize("exercise", EXERCISES)
def test_every_exercise_has_wrong_solutions_and_an_alternative(exercise):
    wrong = sorted(p.name for p in HERE.glob(f"wrong/{exercise}/*.py"))
    assert len(wrong) >= MIN_WRONG, f"{exercise}: {len(wrong)} wrong solutions in wrong/{exercise}/, " \
                                    f"at least {MIN_WRONG} expected"
    assert (HERE / "alternatives" / f"{exercise}.py").is_file(), f"{exercise}: no alternatives/{exercise}.py"
    assert (HERE / f"{exercise}.py").is_file(), f"{exercise}: no starter {exercise}.py"


if __name__ == "__main__":  # python test_graders.py JOBS.json RESULTS.json
    Path(sys.argv[2]).write_text(json.dumps(grade_all(json.loads(Path(sys.argv[1]).read_text()))))
