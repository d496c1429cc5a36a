"""Run the tutorial's chapters, and check that what they print is what the chapters show.

    python tutorial/run_chapters.py                          # every chapter: run, compare, summary
    python tutorial/run_chapters.py tutorial/03-*.md -v      # one chapter, output marked per block
    python tutorial/run_chapters.py --strict                 # exit status 1 when an output differs
    python tutorial/run_chapters.py --refresh-figures        # rewrite the committed tutorial/figures/

Running. The ```python blocks of a chapter run in order, in one fresh namespace, from the
repository root, as a reader pastes them into a Python session there. ```bash and ```text blocks
are not run. Each chapter reads its inputs from the environment, with the real defaults:
TUTORIAL_CHECKPOINT (runs/demo, so run `make demo` first), TUTORIAL_CORPUS (wiki), TUTORIAL_FIGURES,
and a few of a chapter's own (tutorial/README.md lists them). A failing block stops its chapter with
the chapter's file name, the block's number and its line in the Markdown file (tracebacks point into
the .md file). tests/test_tutorial.py runs every chapter this way on a tiny checkpoint and corpus, so
the code in the text cannot drift from the code in the project.

Comparing. A ```python block's output is the ```text block right after it: the next fenced block,
with only blank lines between (every chapter pairs them so; a ```text block after prose illustrates
something else and is not compared). What a block prints (its stdout: shown as it runs, and kept) is
compared with that ```text block line by line, whitespace normalized and blank lines left out:
  - a number matches within one unit of its last printed digit (6.69 and 6.70, 0.207 and 0.206,
    3.3e-06 and 3.4e-06, 8008 and 8009): the last digit moves with the CPU. Such a block counts as
    matching; -v lists its lines;
  - any other text must be the same;
  - "..." stands for any text within a line (a temporary path, a time), and a line that is only
    "..." for any number of lines: output the chapter leaves out;
  - a block fenced ```text nocompare is not compared at all (GitHub renders it as ```text: it reads
    the first word). Use it sparingly: "..." keeps the rest of a block checked.
A summary per chapter counts the blocks that match and those that differ, and shows each difference
with its line in the Markdown file; when a block differs it names this machine's precision and the
checkpoint's (the chapters' text comes from a CPU with native bf16). Exit status: 1 when a block
fails; with --strict also when an output differs beyond the last digit; otherwise 0.

Figures. The chapters write theirs to TUTORIAL_FIGURES. Unless you set it, that is
runs/tutorial-figures (not committed); --refresh-figures makes it tutorial/figures, the committed
figures the chapters show, for whoever updates them.
"""

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "tutorial"
COMMITTED_FIGURES = "tutorial/figures"  # relative to ROOT, where the chapters run
SCRATCH_FIGURES = "runs/tutorial-figures"  # runs/ is not committed
REFERENCE = "2 cores of an AMD EPYC with AVX-512 BF16 (self-questioning in bf16)"

# A fence at the start of a line: ```kind words ... ``` (the closing fence alone on its line).
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)
# A printed number: optional sign, digits (1,998 with thousands commas), decimals, exponent. Not
# digits glued to a word or a dot (L6, step-0000140 is 0000140, v2), and never part of a number.
NUMBER = r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?!\d)"
PIECE = re.compile(rf"(?P<ellipsis>\.\.\.)|(?P<number>{NUMBER})")
ELIDED = "..."  # a line of a ```text block that stands for any number of lines

# How a printed line compares with the chapter's (ordered: a block is as bad as its worst line).
SAME, LAST_DIGIT, DIFFERS = "same", "within the last digit", "differs"


class ChapterError(Exception):
    """A block of a chapter raised; the message names the chapter, the block and its line."""


@dataclass
class Block:
    kind: str  # python, text, bash, ... (the fence's first word)
    options: tuple  # the fence's other words: ("nocompare",)
    line: int  # the Markdown line of the block's first content line
    body: str
    after_prose: bool  # something other than blank lines stands between it and the block before
    start: int = 0  # where the fenced block, fences included, begins and ends in the Markdown text
    end: int = 0


@dataclass
class BlockReport:
    number: int  # the ```python block's number in its chapter, from 1
    code_line: int
    output_line: int  # the ```text block's first line (0: the chapter shows no output)
    status: str  # SAME, LAST_DIGIT, DIFFERS; "nocompare"; "not shown"; "silent"
    rows: list = field(default_factory=list)  # (status, markdown line, expected, printed), not SAME


# ---------------------------------------------------------------------------------------------
# 1. A chapter's blocks, and which ```text block shows which block's output
# ---------------------------------------------------------------------------------------------

def chapters(folder=TUTORIAL) -> list[Path]:
    """The numbered chapters, in order: 01-*.md, 02-*.md, ..."""
    return sorted(Path(folder).glob("[0-9][0-9]-*.md"))


def fenced_blocks(text) -> list[Block]:
    """Every fenced block of a Markdown text, in order."""
    blocks, end = [], 0
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start(3)) + 1
        blocks.append(Block(m.group(1), tuple(m.group(2).split()), line, m.group(3),
                            after_prose=bool(text[end:m.start()].strip()), start=m.start(), end=m.end()))
        end = m.end()
    return blocks


def pair_outputs(blocks) -> list[tuple[Block, Block | None]]:
    """Every ```python block with the ```text block that shows its output (None: no output shown).

    The rule: the ```text block must be the very next fenced block, with only blank lines between."""
    pairs = []
    for block, after in zip(blocks, blocks[1:] + [None]):
        if block.kind == "python":
            shows = after is not None and after.kind == "text" and not after.after_prose
            pairs.append((block, after if shows else None))
    return pairs


def code_and_output(path) -> list[tuple[Block, Block | None]]:
    """A chapter's ```python blocks, each with the ```text block that shows its output, or None."""
    return pair_outputs(fenced_blocks(Path(path).read_text(encoding="utf-8")))


def python_blocks(path) -> list[tuple[int, str]]:
    """(line of the block's first code line in the file, code) for every ```python block."""
    return [(code.line, code.body) for code, _ in code_and_output(path)]


# ---------------------------------------------------------------------------------------------
# 2. Running a chapter, each block's stdout kept as the reader sees it
# ---------------------------------------------------------------------------------------------

class Tee(io.TextIOBase):
    """A stdout that writes to the real one (the reader watches the chapter run) and keeps a copy."""

    def __init__(self, shown):
        self.shown, self.kept = shown, io.StringIO()

    def write(self, text):
        self.shown.write(text)
        return self.kept.write(text)

    def flush(self):
        self.shown.flush()

    def isatty(self):
        return self.shown.isatty()

    @property
    def encoding(self):
        return getattr(self.shown, "encoding", "utf-8")


def run_chapter(path, verbose=False, printed=None) -> dict:
    """Run one chapter's blocks in one new namespace; return the namespace.

    printed: a dict that receives, for each block number (from 1), what the block printed."""
    path = Path(path)
    namespace = {"__name__": "__main__", "__file__": str(path)}
    for number, (line, code) in enumerate(python_blocks(path), 1):
        if verbose:
            print(f"--- {path.name}, block {number} (line {line})", flush=True)
            t0 = time.time()
        # Blank lines in front, so that a traceback's line numbers are the Markdown file's.
        compiled = compile("\n" * (line - 1) + code, str(path), "exec")
        tee = Tee(sys.stdout)
        try:
            with contextlib.redirect_stdout(tee):
                exec(compiled, namespace)
        except Exception as e:
            raise ChapterError(f"{path.name}, block {number} (line {line}): {type(e).__name__}: {e}") from e
        finally:
            sys.stdout.flush()
        if printed is not None:
            printed[number] = tee.kept.getvalue()
        if verbose:
            print(f"--- ({time.time() - t0:.1f} s)", flush=True)
    return namespace


# ---------------------------------------------------------------------------------------------
# 3. Comparing a printed line with the chapter's: numbers within their last digit, "..." for any text
# ---------------------------------------------------------------------------------------------

def normalized(text) -> list[str]:
    """The non-blank lines of a text, each with its runs of whitespace made one space."""
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def line_pattern(expected) -> re.Pattern:
    """A regular expression for the printed lines that may match `expected`: its numbers become a
    group each (compared afterwards), "..." any text, the rest itself."""
    parts, end = [], 0
    for m in PIECE.finditer(expected):
        parts += [re.escape(expected[end:m.start()]), ".*?" if m.group("ellipsis") else f"({NUMBER})"]
        end = m.end()
    return re.compile("".join(parts) + re.escape(expected[end:]))


def number_status(expected, printed) -> str:
    """SAME when the two numbers are equal, LAST_DIGIT when they are one unit of the coarser last
    digit apart or less (6.69 and 6.7: a unit of 0.1), DIFFERS otherwise."""
    a, b = Decimal(expected.replace(",", "")), Decimal(printed.replace(",", ""))
    if a == b:
        return SAME
    unit = Decimal(1).scaleb(max(a.as_tuple().exponent, b.as_tuple().exponent))
    return LAST_DIGIT if abs(a - b) <= unit else DIFFERS


def compare_line(expected, printed) -> str:
    """How a printed line (normalized) compares with the chapter's: SAME, LAST_DIGIT or DIFFERS."""
    if expected == printed:
        return SAME
    match = line_pattern(expected).fullmatch(printed)
    if match is None:
        return DIFFERS
    wanted = [m.group("number") for m in PIECE.finditer(expected) if m.group("number")]
    statuses = {number_status(a, b) for a, b in zip(wanted, match.groups())}
    return DIFFERS if DIFFERS in statuses else LAST_DIGIT if LAST_DIGIT in statuses else SAME


def compare_lines(expected, printed) -> list[tuple]:
    """Align the chapter's lines [(markdown line, text)] with the printed lines [text], both
    normalized, at the least cost (an edit distance): a line missing or extra costs 2, a differing
    pair 2 when only its numbers differ, else 3 (so a line unlike any printed one reads "missing",
    not "differs"), and a line "..." takes any number of printed lines at no cost. Returns one row
    per line that is not the same: (status, markdown line, expected or None, printed or None),
    status LAST_DIGIT, DIFFERS, "missing" (not printed) or "extra" (printed, not in the chapter)."""
    n, m = len(expected), len(printed)
    status = {}

    def pair(i, j):  # the cost of pairing expected[i] with printed[j]
        if (i, j) not in status:
            status[i, j] = compare_line(expected[i][1], printed[j])
        if status[i, j] != DIFFERS:
            return 0
        return 2 if PIECE.sub("#", expected[i][1]) == PIECE.sub("#", printed[j]) else 3

    # cost[i][j]: the least cost of aligning expected[i:] with printed[j:]
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for j in range(m):
        cost[n][j] = 2 * (m - j)
    for i in range(n - 1, -1, -1):
        elided = expected[i][1] == ELIDED
        cost[i][m] = cost[i + 1][m] + (0 if elided else 2)
        for j in range(m - 1, -1, -1):
            if elided:
                cost[i][j] = min(cost[i + 1][j], cost[i][j + 1])
            else:
                cost[i][j] = min(cost[i + 1][j + 1] + pair(i, j), cost[i + 1][j] + 2, cost[i][j + 1] + 2)
    rows, i, j = [], 0, 0
    last_line = expected[-1][0] if expected else 0
    while i < n or j < m:
        line = expected[i][0] if i < n else last_line
        if i < n and expected[i][1] == ELIDED:
            i, j = (i + 1, j) if j == m or cost[i][j] == cost[i + 1][j] else (i, j + 1)
        elif i < n and j < m and cost[i][j] == cost[i + 1][j + 1] + pair(i, j):
            if status[i, j] != SAME:
                rows.append((status[i, j], line, expected[i][1], printed[j]))
            i, j = i + 1, j + 1
        elif i < n and (j == m or cost[i][j] == cost[i + 1][j] + 2):
            rows.append(("missing", line, expected[i][1], None))
            i += 1
        else:
            rows.append(("extra", line, None, printed[j]))
            j += 1
    return rows


def compare_block(number, code, shown, printed) -> BlockReport:
    """One block's report: its printed text against the ```text block `shown` (or None)."""
    report = BlockReport(number, code.line, shown.line if shown else 0, SAME)
    if shown is None:
        report.status = "not shown" if printed.strip() else "silent"
    elif "nocompare" in shown.options:
        report.status = "nocompare"
    else:
        lines = [(shown.line + k, line) for k, line in enumerate(shown.body.splitlines())]
        expected = [(line, " ".join(text.split())) for line, text in lines if text.strip()]
        report.rows = compare_lines(expected, normalized(printed))
        worst = {row[0] for row in report.rows}
        report.status = SAME if not worst else LAST_DIGIT if worst == {LAST_DIGIT} else DIFFERS
    return report


def compare_chapter(path, printed) -> list[BlockReport]:
    """Every ```python block of a chapter against what it printed ({block number: text})."""
    return [compare_block(number, code, shown, printed.get(number, ""))
            for number, (code, shown) in enumerate(code_and_output(path), 1)]


# ---------------------------------------------------------------------------------------------
# 4. The report: per chapter, then the machine's precision when something differs
# ---------------------------------------------------------------------------------------------

def chapter_summary(name, reports, verbose=False, most=8) -> str:
    """A chapter's summary line, then each differing block's rows (with -v also the last-digit
    ones and the blocks that print output the chapter does not show)."""
    kinds = (SAME, LAST_DIGIT, DIFFERS, "nocompare", "not shown")
    count = {kind: sum(r.status == kind for r in reports) for kind in kinds}
    compared = count[SAME] + count[LAST_DIGIT] + count[DIFFERS]
    text = [f"{name}: output of {compared} blocks compared: {count[SAME] + count[LAST_DIGIT]} match"
            + (f" ({count[LAST_DIGIT]} within the last digit)" if count[LAST_DIGIT] else "")
            + f", {count[DIFFERS]} differ"
            + (f"; {count['nocompare']} not compared (nocompare)" if count["nocompare"] else "")]
    for r in reports:
        if r.status == DIFFERS or (verbose and r.status == LAST_DIGIT):
            text.append(f"  block {r.number} (code at line {r.code_line}, output at line {r.output_line}): "
                        f"{r.status}")
            rows = [row for row in r.rows if verbose or row[0] != LAST_DIGIT]
            for status, line, expected, printed in rows[:most]:
                mark = "~" if status == LAST_DIGIT else "-"
                if expected is not None:
                    text.append(f"    {mark} line {line}: {expected[:150]}")
                if printed is not None:
                    where = ("printed" if expected is not None
                             else f"printed, not in the chapter (near line {line})")
                    text.append(f"    {'~' if status == LAST_DIGIT else '+'} {where}: {printed[:150]}")
            if len(rows) > most:
                text.append(f"    ... and {len(rows) - most} more lines")
        elif verbose and r.status == "not shown":
            text.append(f"  block {r.number} (line {r.code_line}) prints output the chapter does not show")
    return "\n".join(text)


def precision_note() -> str:
    """What decides the last digits: this machine's CPU and what `auto` precision becomes on it, and
    the precision the chapters' checkpoint was trained with (as its record says)."""
    try:
        import torch

        import runtime

        machine = runtime.setup("auto", "auto")
        native = runtime.native_bf16(machine.device)
        questioning = runtime.questioning_precision("auto", machine.device, machine.precision)
        capability = torch.backends.cpu.get_cpu_capability()
        note = (f"this machine: {machine.device.type}, CPU capability {capability}, "
                f"native bf16 {'yes' if native else 'no (no avx512_bf16 or amx_bf16 in /proc/cpuinfo)'}; "
                f"--precision auto is {machine.precision}, --questioning-precision auto is {questioning}")
    except Exception as e:  # the note explains a difference; it must not hide the report
        note = f"this machine's precision could not be read ({type(e).__name__}: {e})"
    name = os.environ.get("TUTORIAL_CHECKPOINT", "runs/demo")
    try:
        import checkpoint

        folder = checkpoint.resolve_checkpoint(name)
        # Its record (provenance.json) holds the options a run resolved; older checkpoints: options.json.
        record = folder / checkpoint.PROVENANCE
        options, source = ((json.loads(record.read_text())["settings"], record.name) if record.is_file()
                           else (json.loads((folder / "options.json").read_text()), "options.json"))
        note += (f"\nthe checkpoint {name} was trained on {options['device']} in {options['precision']}, "
                 f"questioning in {options['questioning_precision']} (its {source})")
    except Exception as e:
        note += f"\nthe checkpoint {name} records no precision ({type(e).__name__}: {e})"
    return note + f"\nthe chapters' text comes from {REFERENCE}"


def figures_folder(refresh, environ) -> str:
    """Where the chapters write their figures: the reader's TUTORIAL_FIGURES if set, else
    runs/tutorial-figures, or the committed tutorial/figures with --refresh-figures. Sets it."""
    chosen = environ.get("TUTORIAL_FIGURES")
    if chosen and refresh and Path(ROOT, chosen).resolve() != (ROOT / COMMITTED_FIGURES).resolve():
        raise SystemExit(f"--refresh-figures writes {COMMITTED_FIGURES}, but TUTORIAL_FIGURES is {chosen}: "
                         "unset one of them")
    environ["TUTORIAL_FIGURES"] = chosen or (COMMITTED_FIGURES if refresh else SCRATCH_FIGURES)
    return environ["TUTORIAL_FIGURES"]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run the ```python blocks of the tutorial's chapters and "
                                             "compare what they print with the chapters' ```text blocks.")
    ap.add_argument("chapters", nargs="*", help="chapter files (default: every tutorial/NN-*.md)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="mark each block's output; list the lines within the last digit too")
    ap.add_argument("--strict", action="store_true", help="exit status 1 when an output differs")
    ap.add_argument("--refresh-figures", action="store_true",
                    help=f"write the figures to the committed {COMMITTED_FIGURES} "
                         f"(default: {SCRATCH_FIGURES})")
    args = ap.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files, never to a window
    paths = [Path(p).resolve() for p in args.chapters] or chapters()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    figures = figures_folder(args.refresh_figures, os.environ)
    summaries, differing = [], 0
    for path in paths:
        t0 = time.time()
        print(f"=== {path.name}", flush=True)
        printed = {}
        try:
            run_chapter(path, args.verbose, printed)
        except ChapterError as e:
            import traceback

            traceback.print_exception(e.__cause__)
            sys.exit(f"tutorial failed: {e}")
        reports = compare_chapter(path, printed)
        differing += sum(r.status == DIFFERS for r in reports)
        summaries.append(chapter_summary(path.name, reports, args.verbose))
        print(f"=== {path.name}: ok, {time.time() - t0:.1f} s; {summaries[-1].splitlines()[0]}", flush=True)
    print(f"\n=== summary: {len(paths)} chapter(s) ran; their figures are in {figures} (TUTORIAL_FIGURES)")
    print("\n".join(summaries))
    if differing:
        note = precision_note().replace("\n", "\n  ")
        print(f"blocks whose output differs from the chapter: {differing}. What moves the digits:\n  {note}")
    if differing and args.strict:
        sys.exit(f"tutorial output differs in {differing} block(s) (--strict)")


if __name__ == "__main__":
    main()
