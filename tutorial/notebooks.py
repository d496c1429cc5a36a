"""The tutorial's chapters as Jupyter notebooks: tutorial/NN-*.md -> tutorial/notebooks/NN-*.ipynb.

    python tutorial/notebooks.py            # write every chapter's notebook
    python tutorial/notebooks.py --check    # exit status 1, naming each notebook its chapter no longer makes

The chapters are the source. The notebooks are made from them, committed, and never edited by hand:
tests/test_tutorial.py runs --check, so a chapter changed without its notebook fails the tests. A
notebook is nbformat 4 JSON written with the json module (no jupyter needed), the same bytes for
the same chapter. Its cells, in the chapter's order:
  - the prose between blocks: markdown cells, with relative links and images rewritten to resolve
    from tutorial/notebooks/ (figures/x.png -> ../figures/x.png; a link to another chapter points at
    that chapter's notebook);
  - each ```python block: a code cell. The ```text block that shows its output (the rule of
    run_chapters.py: the very next fenced block, only blank lines between) becomes the cell's stored
    output, a stdout stream: the notebook opens looking like the chapter, code then output, and
    running a cell replaces the chapter's output with this machine's. (As a markdown cell, the
    chapter's output would stay beside the new one, and read as if it were this run's.)
  - ```bash blocks, and ```text blocks after prose: part of the markdown; they are not Python.
  - before the first code cell, one that moves to the repository root, as run_chapters.py runs the
    chapters, so that their relative paths (runs/demo, results/...) work from a notebook.
"""

import argparse
import json
import posixpath
import re
import sys
from pathlib import Path

from run_chapters import ROOT, TUTORIAL, chapters, fenced_blocks, pair_outputs

NOTEBOOKS = TUTORIAL / "notebooks"
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
LINK = re.compile(r"(?<=\]\()[^)\s]+")  # the target of a Markdown link [text](target) or image ![alt](target)
CODE = re.compile(r"^```.*?^```|`[^`\n]*`", re.S | re.M)  # fenced blocks and inline code: no links there
NOT_RELATIVE = re.compile(r"[a-zA-Z][\w+.-]*:|#|/")  # https://, mailto:, an anchor, an absolute path

# The first code cell: the chapter's code runs from the repository root (the folder that holds
# tutorial/run_chapters.py), wherever Jupyter or VS Code starts the kernel.
SETUP = '''\
# Made from tutorial/{chapter} by tutorial/notebooks.py: edit the chapter, not this notebook.
# The outputs shown before you run a cell are the chapter's. Its code runs from the repository root,
# as tutorial/run_chapters.py runs it: this cell goes there.
import os
import sys
from pathlib import Path

repository_root = Path.cwd().resolve()
while not (repository_root / "tutorial" / "run_chapters.py").is_file():
    if repository_root == repository_root.parent:
        raise FileNotFoundError(f"no repository above {{Path.cwd()}}: open the notebook in its folder")
    repository_root = repository_root.parent
os.chdir(repository_root)
if str(repository_root) not in sys.path:
    sys.path.insert(0, str(repository_root))
print("working directory:", repository_root)'''


def source_lines(text) -> list[str]:
    """A cell's text as nbformat stores it: lines that keep their newline, the last one without."""
    return text.splitlines(keepends=True)


def markdown_cell(text) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": source_lines(text)}


def code_cell(code, output=None) -> dict:
    """A code cell that has not run here (execution_count null); `output`: the chapter's, as stdout."""
    stream = {"name": "stdout", "output_type": "stream", "text": source_lines(output or "")}
    outputs = [] if output is None else [stream]
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": outputs,
            "source": source_lines(code.rstrip("\n"))}


def moved_link(target, chapter_names) -> str:
    """A chapter's relative link as seen from tutorial/notebooks/; a chapter's link -> its notebook."""
    if NOT_RELATIVE.match(target):
        return target
    path, hash_mark, anchor = target.partition("#")
    path = path[:-3] + ".ipynb" if path in chapter_names else posixpath.normpath("../" + path)
    return path + hash_mark + anchor


def moved_links(markdown, chapter_names) -> str:
    """Rewrite the links of the prose, leaving code (fenced blocks, `inline`) as it is."""
    parts, end = [], 0
    for code in CODE.finditer(markdown):
        parts += [LINK.sub(lambda m: moved_link(m.group(), chapter_names), markdown[end:code.start()]),
                  code.group()]
        end = code.end()
    return "".join(parts) + LINK.sub(lambda m: moved_link(m.group(), chapter_names), markdown[end:])


def cells(chapter, chapter_names) -> list[dict]:
    """The notebook's cells for one chapter (see the module's docstring)."""
    text = Path(chapter).read_text(encoding="utf-8")
    blocks = fenced_blocks(text)
    output_of = {id(code): output for code, output in pair_outputs(blocks)}
    outputs = {id(output) for output in output_of.values() if output is not None}
    result, prose, end = [], [], 0

    def flush_prose():
        markdown = "".join(prose).strip("\n")
        if markdown.strip():
            result.append(markdown_cell(moved_links(markdown, chapter_names)))
        prose.clear()

    for block in blocks:
        prose.append(text[end:block.start])
        end = block.end
        if id(block) in outputs:
            continue  # stored with its code cell
        if block.kind != "python":
            prose.append(text[block.start:block.end])  # ```bash, a ```text illustration: read, not run
            continue
        flush_prose()
        if not any(cell["cell_type"] == "code" for cell in result):
            result.append(code_cell(SETUP.format(chapter=Path(chapter).name)))
        output = output_of[id(block)]
        result.append(code_cell(block.body, output.body if output is not None else None))
    prose.append(text[end:])
    flush_prose()
    for number, cell in enumerate(result):  # nbformat 4.5: every cell has an id, unique in its notebook
        cell["id"] = f"{Path(chapter).name[:2]}-{number:02d}"
    return result


def notebook(chapter, chapter_names) -> bytes:
    """The .ipynb file of one chapter, byte for byte (sorted keys, indent 1, as Jupyter writes)."""
    document = {"cells": cells(chapter, chapter_names), "nbformat": 4, "nbformat_minor": 5,
                "metadata": {"kernelspec": KERNEL, "language_info": {"name": "python"}}}
    return (json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def display_path(path) -> str:
    """A path as the messages show it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write the tutorial's chapters as Jupyter notebooks.")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit status 1 naming each notebook that does not match its chapter")
    ap.add_argument("--chapters", type=Path, default=TUTORIAL, help="the folder of the NN-*.md chapters")
    ap.add_argument("--out", type=Path, default=NOTEBOOKS, help="the folder of the notebooks")
    args = ap.parse_args(argv)
    sources = chapters(args.chapters)
    if not sources:
        sys.exit(f"no chapters (NN-*.md) in {args.chapters}")
    names = {p.name for p in sources}
    wanted = {args.out / f"{p.stem}.ipynb": notebook(p, names) for p in sources}
    orphans = sorted(p for p in args.out.glob("[0-9][0-9]-*.ipynb") if p not in wanted)
    if args.check:
        problems = [f"{display_path(p)} is missing" if not p.is_file()
                    else f"{display_path(p)} is stale: its chapter changed"
                    for p, data in wanted.items() if not p.is_file() or p.read_bytes() != data]
        problems += [f"{display_path(p)} has no chapter" for p in orphans]
        if problems:
            sys.exit("\n".join(problems) + "\nrun: python tutorial/notebooks.py")
        print(f"{len(wanted)} notebooks in {display_path(args.out)} match their chapters")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for path, data in wanted.items():
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
            print(f"wrote {display_path(path)}")
    for path in orphans:
        path.unlink()
        print(f"removed {display_path(path)}: no chapter makes it")
    print(f"{len(wanted)} notebooks in {display_path(args.out)}")


if __name__ == "__main__":
    main()
