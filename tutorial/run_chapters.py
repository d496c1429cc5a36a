"""Run the tutorial's chapters: the ```python blocks of tutorial/NN-*.md, in order.

    python tutorial/run_chapters.py                          # every chapter, with the defaults
    python tutorial/run_chapters.py tutorial/03-*.md -v      # one chapter, output marked per block

One chapter is one fresh namespace; the blocks run from the repository root,
as a reader pastes them into a Python session there. ```bash and ```text
blocks are not run. Each chapter reads its inputs from the environment, with
the real defaults: TUTORIAL_CHECKPOINT (runs/demo, so run `make demo` first),
TUTORIAL_CORPUS (wiki) and TUTORIAL_FIGURES (tutorial/figures, where the
committed figures come from), and a few of a chapter's own (tutorial/README.md
lists them). tests/test_tutorial.py runs every chapter this way on a tiny
checkpoint and corpus, so the code in the text cannot drift from the code in
the project.

A failing block stops its chapter with the chapter's file name, the block's
number and its line in the Markdown file (tracebacks point into the .md file).
"""

import argparse
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "tutorial"
# A fence at the start of a line: ```python ... ``` (the closing fence alone on its line).
PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


class ChapterError(Exception):
    """A block of a chapter raised; the message names the chapter, the block and its line."""


def chapters(folder=TUTORIAL) -> list[Path]:
    """The numbered chapters, in order: 01-*.md, 02-*.md, ..."""
    return sorted(Path(folder).glob("[0-9][0-9]-*.md"))


def python_blocks(path) -> list[tuple[int, str]]:
    """(line of the block's first code line in the file, code) for every ```python block."""
    text = Path(path).read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in PYTHON_BLOCK.finditer(text)]


def run_chapter(path, verbose=False) -> dict:
    """Run one chapter's blocks in one new namespace; return the namespace."""
    path = Path(path)
    namespace = {"__name__": "__main__", "__file__": str(path)}
    for number, (line, code) in enumerate(python_blocks(path), 1):
        if verbose:
            print(f"--- {path.name}, block {number} (line {line})", flush=True)
            t0 = time.time()
        # Blank lines in front, so that a traceback's line numbers are the Markdown file's.
        compiled = compile("\n" * (line - 1) + code, str(path), "exec")
        try:
            exec(compiled, namespace)
        except Exception as e:
            raise ChapterError(f"{path.name}, block {number} (line {line}): {type(e).__name__}: {e}") from e
        if verbose:
            print(f"--- ({time.time() - t0:.1f} s)", flush=True)
    return namespace


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run the ```python blocks of the tutorial's chapters.")
    ap.add_argument("chapters", nargs="*", help="chapter files (default: every tutorial/NN-*.md)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print a line before each block's output")
    args = ap.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files, never to a window
    paths = [Path(p).resolve() for p in args.chapters] or chapters()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    for path in paths:
        t0 = time.time()
        print(f"=== {path.name}", flush=True)
        try:
            run_chapter(path, args.verbose)
        except ChapterError as e:
            import traceback

            traceback.print_exception(e.__cause__)
            sys.exit(f"tutorial failed: {e}")
        print(f"=== {path.name}: ok, {time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
