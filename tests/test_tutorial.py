"""The tutorial's code runs: every ```python block of every tutorial/NN-*.md chapter.

Each chapter runs in its own process (tutorial/run_chapters.py), on the tiny
checkpoint and corpus of conftest.py instead of the demo's, on tiny task files
in the GLUE/SuperGLUE layouts (write_tiny_tasks, made-up sentences) instead of
the real ones, with its figures written to a temporary folder. Chapters 8, 9
and 10 read the committed results (results/ablation-small, results/ablation-study,
results/transfer); the others' printed numbers are then meaningless. What is
tested is that the code in the text is still the code of the project.
New chapters (11-*.md, ...) are picked up by their file names.
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
