"""The tutorial's code runs: every ```python block of every tutorial/NN-*.md chapter.

Each chapter runs in its own process (tutorial/run_chapters.py), on the tiny
checkpoint and corpus of conftest.py instead of the demo's, on tiny task files
in the GLUE/SuperGLUE layouts (write_tiny_tasks, made-up sentences) instead of
the real ones, with its figures written to a temporary folder. Chapters 8, 9
and 10 read the committed results (results/ablation-small, results/ablation-study,
results/transfer); the others' printed numbers are then meaningless, so the
chapters run without --strict: their outputs are compared and reported, never
failed on. What is tested is that the code in the text is still the code of the
project. New chapters (11-*.md, ...) are picked up by their file names.

Then the comparison itself (printed output against a chapter's ```text blocks),
on small synthetic chapters, and the notebooks (tutorial/notebooks.py): made
from the chapters, committed, and checked to match them.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "tutorial"
_spec = importlib.util.spec_from_file_location("run_chapters", TUTORIAL / "run_chapters.py")
run_chapters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_chapters)
sys.modules.setdefault("run_chapters", run_chapters)  # notebooks.py imports it as its neighbour
_spec = importlib.util.spec_from_file_location("notebooks", TUTORIAL / "notebooks.py")
notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebooks)

CHAPTERS = run_chapters.chapters(TUTORIAL)
LINK = re.compile(r"\]\(([^)\s#]+)\)")  # the target of a Markdown link [text](target)
CODE = re.compile(r"^```.*?^```|`[^`\n]*`", re.S | re.M)  # fenced blocks and inline code: not links


def write_tiny_tasks(root):
    """Small task files in the original GLUE/SuperGLUE layouts, with made-up sentences (chapter 7 reads
    them)."""
    nouns, verbs = ["cat", "dog", "bird", "king", "queen", "child"], ["saw", "found", "built", "took"]
    pairs = [(f"the {a} {v} a {b} near the river .", f"the {a} {v} a {b} .")
             for a in nouns for v in verbs for b in nouns[:2]]
    # longer than the tiny checkpoint's 64 positions
    long = " ".join(f"the old {n} sat near the hill ." for n in nouns * 3)
    rte = [f"{i}\t{a}\t{b}\t{['entailment', 'not_entailment'][i % 2]}"
           for i, (a, b) in enumerate([(long, "the cat sat ."), *pairs[:30]])]
    mrpc = [f"{i % 2}\t{1000 + i}\t{2000 + i}\t{a}\t{b}" for i, (a, b) in enumerate(pairs[:20])]
    cola = [f"src\t{int(i % 3 > 0)}\t{'' if i % 3 else '*'}\t{a}" for i, (a, _) in enumerate(pairs[:30])]
    rows = {"glue/RTE": ("index\tsentence1\tsentence2\tlabel", rte),
            "glue/MRPC": ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String", mrpc),
            "glue/CoLA": (None, cola)}
    for folder, (header, lines) in rows.items():
        (root / folder).mkdir(parents=True)
        for split in ("train", "dev"):
            text = "\n".join(([header] if header else []) + lines) + "\n"
            (root / folder / f"{split}.tsv").write_text(text, encoding="utf-8")
    cb_labels = ["entailment", "contradiction", "neutral"]
    cb = [{"premise": a, "hypothesis": b, "label": cb_labels[i % 3], "idx": i}
          for i, (a, b) in enumerate(pairs[:30])]
    wic = [{"word": "run", "sentence1": "run to the river .", "start1": 0, "end1": 3,
            "sentence2": "the dog ran near the hill .", "start2": 8, "end2": 11, "label": False},
           {"word": "saw", "sentence1": "the cat saw a bird .", "start1": 8, "end1": 11,
            "sentence2": "the king saw a queen .", "start2": 9, "end2": 12, "label": True}]
    wic_rows = [dict(r, idx=i) for i, r in enumerate(wic * 4)]
    for folder, examples in (("superglue/CB", cb), ("superglue/WiC", wic_rows)):
        (root / folder).mkdir(parents=True)
        for split in ("train", "val"):
            text = "".join(json.dumps(e) + "\n" for e in examples)
            (root / folder / f"{split}.jsonl").write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_tasks(tmp_path_factory):
    return write_tiny_tasks(tmp_path_factory.mktemp("tasks"))


def links(page):
    """Targets of the Markdown links and images in a page's prose (code left out)."""
    return LINK.findall(CODE.sub("", page.read_text(encoding="utf-8")))


def test_there_are_at_least_six_chapters():
    assert len(CHAPTERS) >= 6, [p.name for p in CHAPTERS]


def test_no_chapter_is_much_over_300_lines():
    """A chapter is read in one sitting: a longer one is two chapters (as 8 and 9 became)."""
    lengths = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in CHAPTERS}
    assert max(lengths.values()) <= 320, lengths


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_chapter_runs(chapter, tiny_checkpoint, tiny_corpus, tiny_tasks, tmp_path):
    assert run_chapters.python_blocks(chapter), f"{chapter.name} has no ```python block"
    figures = tmp_path / "figures"
    env = dict(os.environ, TUTORIAL_CHECKPOINT=str(tiny_checkpoint), TUTORIAL_CORPUS=str(tiny_corpus),
               TUTORIAL_FIGURES=str(figures), TUTORIAL_DATA=str(tiny_tasks), MPLBACKEND="Agg",
               SE_CACHE=str(tmp_path / "cache"), TUTORIAL_WORK=str(tmp_path / "work"))
    done = subprocess.run([sys.executable, str(TUTORIAL / "run_chapters.py"), str(chapter)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{chapter.name} failed:\n{done.stderr[-4000:]}"
    # Its output was compared with the chapter's text (and reported, not failed on: see the docstring).
    compared = rf"{re.escape(chapter.name)}: output of \d+ blocks compared"
    assert re.search(compared, done.stdout), done.stdout[-2000:]
    assert f"their figures are in {figures}" in done.stdout
    # Every figure the chapter shows is one its own code writes.
    for target in links(chapter):
        if target.startswith("figures/"):
            figure = figures / target.removeprefix("figures/")
            assert figure.is_file(), f"{chapter.name} shows {target} but does not write it"


@pytest.mark.parametrize("page", [TUTORIAL / "README.md", *CHAPTERS],
                         ids=["README.md", *[p.name for p in CHAPTERS]])
def test_links_resolve(page):
    """Relative links point at files that exist (the index's chapter links: the test below)."""
    for target in links(page):
        if "://" in target:
            continue
        if page.name == "README.md" and re.fullmatch(r"\d\d-[\w-]+\.md", target):
            continue  # chapter links: test_index_lists_every_chapter
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_index_lists_every_chapter():
    listed = [t for t in links(TUTORIAL / "README.md") if re.fullmatch(r"\d\d-[\w-]+\.md", t)]
    assert len(listed) >= 10 and {"07-finetuning.md", "08-ablation.md"} <= set(listed)
    assert {"09-ablation-study.md", "10-prompt-tuning.md"} <= set(listed)
    assert listed == sorted(listed), "the index lists the chapters in order"
    for chapter in CHAPTERS:
        assert chapter.name in listed, f"tutorial/README.md does not list {chapter.name}"


def test_a_failing_block_names_its_chapter_block_and_line(tmp_path):
    chapter = tmp_path / "01-broken.md"
    chapter.write_text("# A chapter\n\n```python\nx = 1\n```\n\n```bash\nthis is not python\n```\n\n"
                       "```text\nneither is this\n```\n\nProse.\n\n"
                       "```python\ny = x + 1\nraise ValueError(y)\n```\n")
    assert [line for line, _ in run_chapters.python_blocks(chapter)] == [4, 18]
    with pytest.raises(run_chapters.ChapterError,
                       match=r"01-broken.md, block 2 \(line 18\): ValueError: 2") as info:
        run_chapters.run_chapter(chapter)
    stack = __import__("traceback").extract_tb(info.value.__cause__.__traceback__)
    frames = [f for f in stack if f.filename == str(chapter)]
    assert frames[-1].lineno == 19  # the line of the Markdown file that raised


# ---------------------------------------------------------------------------------------------
# Comparing what a chapter prints with its ```text blocks (tutorial/run_chapters.py)
# ---------------------------------------------------------------------------------------------

SAME, LAST_DIGIT, DIFFERS = run_chapters.SAME, run_chapters.LAST_DIGIT, run_chapters.DIFFERS
# A block that matches, one within the last digit, one that differs, one not compared, one whose
# output the chapter does not show, and a ```text block after prose (an illustration, not an output).
SYNTHETIC = """# A chapter

```python
print("tokens 1998,    loss 1.50")
```

```text
tokens 1998, loss 1.50
```

```python
print("sharon 6.70, accuracy 0.206")
```

```text
sharon 6.69, accuracy 0.207
```

```python
print("sharon 6.71, accuracy 0.206")
print("the end")
```

```text
sharon 6.69, accuracy 0.207
the end
```

```python
print("took 3.2 s")
```

```text nocompare
took 9.9 s
```

Prose.

```text
an illustration
```

```python
print("printed, not shown")
```
"""


def md_line(text, line, occurrence=1):
    """The Markdown line number of the n-th line equal to `line`."""
    numbers = [k for k, each in enumerate(text.splitlines(), 1) if each == line]
    return numbers[occurrence - 1]


@pytest.mark.parametrize("expected, printed, status", [
    ("sharon 6.69", "sharon 6.70", LAST_DIGIT),  # the student's two CPUs
    ("accuracy 0.207", "accuracy 0.206", LAST_DIGIT),
    ("r 3.3e-06", "r 3.4e-06", LAST_DIGIT),
    ("1,998 tokens", "1,999 tokens", LAST_DIGIT),
    ("loss -0.77", "loss -0.76", LAST_DIGIT),
    ("loss 9.60", "loss 9.6", SAME),
    ("0.000 / 10.92", "0.000 / 10.92", SAME),
    ("sharon 6.69", "sharon 6.71", DIFFERS),  # two units of the last digit
    ("8008 blocks", "8010 blocks", DIFFERS),
    ("loss -0.77", "loss 0.77", DIFFERS),
    ("sharon 6.69", "iran 6.69", DIFFERS),  # text is compared exactly
    ("all-MiniLM-L6-v2", "all-MiniLM-L7-v2", DIFFERS),  # digits in a word are text
    ("sharon 6.69", "sharon 6.69 held", DIFFERS),
    ("(3 seeds, ... min)", "(3 seeds, 0.7 min)", SAME),  # "..." in a line: any text
    ("corpus /tmp/se-.../small.txt: 200 documents", "corpus /tmp/se-x1/small.txt: 201 documents", LAST_DIGIT),
])
def test_numbers_match_within_one_unit_of_their_last_digit(expected, printed, status):
    assert run_chapters.compare_line(expected, printed) == status


def test_lines_are_aligned_and_a_line_of_dots_stands_for_any_lines():
    expected = [(10, "corpus /tmp/.../small.txt: 200 documents"), (11, "..."), (12, "end 0.5")]
    printed = ["corpus /tmp/ab/small.txt: 200 documents", "step 0", "step 1", "end 0.5"]
    assert run_chapters.compare_lines(expected, printed) == []
    assert run_chapters.compare_lines(expected, [printed[0], printed[3]]) == []  # "..." may be no line
    assert run_chapters.compare_lines(expected, printed[:3]) == [("missing", 12, "end 0.5", None)]
    lines = [(1, "a 1"), (2, "b 2"), (3, "c 3")]
    assert run_chapters.compare_lines(lines, ["a 1", "c 3"]) == [("missing", 2, "b 2", None)]
    assert run_chapters.compare_lines(lines, ["a 1", "b 2", "x", "c 3"]) == [("extra", 3, None, "x")]
    assert run_chapters.compare_lines(lines, ["a 1", "b 4", "c 3"]) == [(DIFFERS, 2, "b 2", "b 4")]
    assert run_chapters.normalized("  a   b \n\n\t c  \n") == ["a b", "c"]


def test_a_chapter_is_compared_block_by_block(tmp_path, capsys):
    chapter = tmp_path / "01-synthetic.md"
    chapter.write_text(SYNTHETIC)
    printed = {}
    run_chapters.run_chapter(chapter, printed=printed)
    assert "printed, not shown" in capsys.readouterr().out  # the reader still sees every block's output
    assert printed[3] == "sharon 6.71, accuracy 0.206\nthe end\n"
    reports = run_chapters.compare_chapter(chapter, printed)
    assert [r.status for r in reports] == [SAME, LAST_DIGIT, DIFFERS, "nocompare", "not shown"]
    differing = md_line(SYNTHETIC, "sharon 6.69, accuracy 0.207", 2)
    assert reports[2].rows == [(DIFFERS, differing, "sharon 6.69, accuracy 0.207",
                                "sharon 6.71, accuracy 0.206")]
    assert reports[2].output_line == differing
    assert reports[4].output_line == 0  # the ```text block after prose is an illustration, not its output
    summary = run_chapters.chapter_summary(chapter.name, reports)
    assert summary.splitlines()[0] == ("01-synthetic.md: output of 3 blocks compared: 2 match "
                                       "(1 within the last digit), 1 differ; 1 not compared (nocompare)")
    code_line = md_line(SYNTHETIC, 'print("sharon 6.71, accuracy 0.206")')
    assert f"block 3 (code at line {code_line}, output at line {differing}): differs" in summary
    assert f"line {differing}: sharon 6.69" in summary and "printed: sharon 6.71" in summary
    assert "block 2" not in summary  # a last-digit difference is listed with -v only
    verbose = run_chapters.chapter_summary(chapter.name, reports, verbose=True)
    assert "block 2" in verbose and "~ printed: sharon 6.70" in verbose and "block 5" in verbose


def test_strict_fails_on_a_difference_and_the_report_names_the_precision(tmp_path, tiny_checkpoint):
    chapter = tmp_path / "01-synthetic.md"
    chapter.write_text(SYNTHETIC)
    env = dict(os.environ, TUTORIAL_FIGURES=str(tmp_path / "figures"),
               TUTORIAL_CHECKPOINT=str(tiny_checkpoint))

    def run(*options):
        command = [sys.executable, str(TUTORIAL / "run_chapters.py"), str(chapter), *options]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    report = run()
    assert report.returncode == 0, report.stderr[-2000:]
    assert "native bf16" in report.stdout and "--questioning-precision auto is" in report.stdout
    assert f"their figures are in {tmp_path / 'figures'}" in report.stdout  # the reader's setting wins
    strict = run("--strict")
    assert strict.returncode == 1 and "tutorial output differs in 1 block(s) (--strict)" in strict.stderr
    chapter.write_text(SYNTHETIC.replace('print("sharon 6.71', 'print("sharon 6.70'))  # now within the digit
    strict = run("--strict")
    assert strict.returncode == 0, strict.stdout[-2000:]


def test_the_precision_note_reads_the_checkpoints_record(tmp_path, monkeypatch):
    import runtime
    import torch

    (tmp_path / "config.json").write_text("{}")
    settings = {"device": "cpu", "precision": "fp32", "questioning_precision": "bf16"}
    (tmp_path / "provenance.json").write_text(json.dumps({"inputs": {}, "settings": settings}))
    monkeypatch.setenv("TUTORIAL_CHECKPOINT", str(tmp_path))
    note = run_chapters.precision_note()
    native = runtime.native_bf16(torch.device("cpu"))
    if not torch.cuda.is_available():
        assert f"native bf16 {'yes' if native else 'no'}" in note
        assert f"--questioning-precision auto is {'bf16' if native else 'fp32'}" in note
    assert "trained on cpu in fp32, questioning in bf16 (its provenance.json)" in note


def test_figures_go_outside_the_committed_folder_unless_refreshed():
    environ = {}
    assert run_chapters.figures_folder(False, environ) == "runs/tutorial-figures"
    assert environ["TUTORIAL_FIGURES"] == "runs/tutorial-figures"  # set for the chapters
    assert run_chapters.figures_folder(True, {}) == "tutorial/figures"
    assert run_chapters.figures_folder(False, {"TUTORIAL_FIGURES": "/tmp/mine"}) == "/tmp/mine"
    assert run_chapters.figures_folder(True, {"TUTORIAL_FIGURES": "tutorial/figures"}) == "tutorial/figures"
    with pytest.raises(SystemExit, match="--refresh-figures writes tutorial/figures, but TUTORIAL_FIGURES"):
        run_chapters.figures_folder(True, {"TUTORIAL_FIGURES": "/tmp/mine"})
    # A reader who pastes a chapter into Python, without run_chapters.py, does not rewrite them either.
    for chapter in CHAPTERS:
        text = chapter.read_text(encoding="utf-8")
        assert '"TUTORIAL_FIGURES", "tutorial/figures"' not in text, chapter.name


# ---------------------------------------------------------------------------------------------
# The chapters as notebooks (tutorial/notebooks.py)
# ---------------------------------------------------------------------------------------------

NAMES = {p.name for p in CHAPTERS}


def test_the_committed_notebooks_match_the_chapters():
    done = subprocess.run([sys.executable, str(TUTORIAL / "notebooks.py"), "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{done.stderr}(the notebooks are made from the chapters)"


def test_check_names_a_stale_missing_or_orphan_notebook(tmp_path):
    chapters, out = tmp_path / "tutorial", tmp_path / "notebooks"
    chapters.mkdir()
    (chapters / "01-synthetic.md").write_text(SYNTHETIC)
    (chapters / "02-second.md").write_text("# Two\n\n```python\nx = 2\n```\n")
    notebooks.main(["--chapters", str(chapters), "--out", str(out)])
    first = (out / "01-synthetic.ipynb").read_bytes()
    notebooks.main(["--chapters", str(chapters), "--out", str(out), "--check"])  # passes: no exit
    (chapters / "01-synthetic.md").write_text(SYNTHETIC.replace("Prose.", "Other prose."))
    (out / "02-second.ipynb").unlink()
    (out / "03-gone.ipynb").write_text("{}")
    with pytest.raises(SystemExit) as stale:
        notebooks.main(["--chapters", str(chapters), "--out", str(out), "--check"])
    message = str(stale.value)
    assert "01-synthetic.ipynb is stale" in message and "02-second.ipynb is missing" in message
    assert "03-gone.ipynb has no chapter" in message
    notebooks.main(["--chapters", str(chapters), "--out", str(out)])  # writes them again, removes the orphan
    assert not (out / "03-gone.ipynb").exists() and (out / "01-synthetic.ipynb").read_bytes() != first
    (chapters / "01-synthetic.md").write_text(SYNTHETIC)
    assert notebooks.notebook(chapters / "01-synthetic.md", {"01-synthetic.md"}) == first  # same bytes again


def test_a_notebook_is_its_chapter_cell_by_cell(tmp_path):
    chapter = tmp_path / "01-synthetic.md"
    chapter.write_text(SYNTHETIC + "\n```bash\nmake demo\n```\n\nSee [two](02-two.md#top), "
                       "![a figure](figures/a.png), [the index](README.md), [the web](https://example.org) "
                       "and `[code](figures/b.png)`.\n")
    cells = json.loads(notebooks.notebook(chapter, {"01-synthetic.md", "02-two.md"}))["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]) == "# A chapter"
    assert "".join(code[0]["source"]).startswith("# Made from tutorial/01-synthetic.md")
    assert len(code) == 1 + 5  # the setup cell, then the chapter's five blocks
    assert "".join(code[3]["source"]) == 'print("sharon 6.71, accuracy 0.206")\nprint("the end")'
    assert code[3]["outputs"] == [{"name": "stdout", "output_type": "stream",
                                   "text": ["sharon 6.69, accuracy 0.207\n", "the end\n"]}]
    assert code[4]["outputs"][0]["text"] == ["took 9.9 s\n"] and code[5]["outputs"] == []
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert "```text\nan illustration\n```" in markdown and "```bash\nmake demo\n```" in markdown
    assert "(02-two.ipynb#top)" in markdown  # another chapter: its notebook
    assert "(../figures/a.png)" in markdown and "(../README.md)" in markdown
    assert "(https://example.org)" in markdown and "`[code](figures/b.png)`" in markdown  # code is left alone
    assert len({c["id"] for c in cells}) == len(cells)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_every_chapters_notebook_holds_its_code_outputs_and_links(chapter):
    cells = json.loads(notebooks.notebook(chapter, NAMES))["cells"]
    code = [c for c in cells if c["cell_type"] == "code"][1:]  # after the setup cell
    pairs = run_chapters.code_and_output(chapter)
    assert ["".join(c["source"]) for c in code] == [block.body.rstrip("\n") for block, _ in pairs]
    stored = [["".join(output["text"]) for output in c["outputs"]] for c in code]
    assert stored == [[shown.body] if shown else [] for _, shown in pairs]
    for cell in cells:
        if cell["cell_type"] == "markdown":
            for target in LINK.findall(CODE.sub("", "".join(cell["source"]))):
                if "://" not in target:
                    broken = f"{chapter.name}'s notebook: broken link {target}"
                    assert (notebooks.NOTEBOOKS / target).exists(), broken


def test_the_setup_cell_moves_to_the_repository_root(tmp_path):
    setup = notebooks.SETUP.format(chapter="01-x.md") + "\nprint('cwd', os.getcwd())"
    moved = subprocess.run([sys.executable, "-c", setup], cwd=notebooks.NOTEBOOKS, capture_output=True,
                           text=True, timeout=60)
    assert moved.returncode == 0 and f"cwd {ROOT}" in moved.stdout, moved.stderr
    lost = subprocess.run([sys.executable, "-c", setup], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert lost.returncode == 1 and "FileNotFoundError: no repository above" in lost.stderr


def test_the_notebooks_are_valid_nbformat():
    nbformat = pytest.importorskip("nbformat")  # not a dependency: checked where it is installed
    for path in sorted(notebooks.NOTEBOOKS.glob("*.ipynb")):
        nbformat.validate(nbformat.read(path, as_version=4))
