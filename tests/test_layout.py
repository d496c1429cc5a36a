"""How the code is arranged: train.py is a leaf, the rules import nothing of the project, and the
experiments (experiments/) measure the method without being part of it."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {p.stem for p in ROOT.glob("*.py")}


def imported(path: Path) -> set[str]:
    """The top-level modules a Python file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_nothing_imports_train_py():
    """As nothing imports nanoGPT's train.py: no module, script, exercise or tutorial chapter (tests may
    run it)."""
    code = [p for p in ROOT.glob("*.py") if p.name not in ("train.py", "conftest.py")]
    code += [p for p in (ROOT / "experiments").glob("*.py")]
    code += [p for p in (ROOT / "tutorial").rglob("*.py") if not p.name.startswith("test_")]
    importers = [p.name for p in code if "train" in imported(p)]
    chapters = [p.name for p in (ROOT / "tutorial").glob("*.md")
                if re.search(r"^\s*(import train\b|from train import)", p.read_text(encoding="utf-8"), re.M)]
    assert len(code) > 10 and importers == [] and chapters == []


def test_the_rules_import_nothing_of_the_project_but_each_other_s_constants():
    assert imported(ROOT / "masking.py") & PROJECT == set()
    assert imported(ROOT / "smoothing.py") & PROJECT == {"masking"}
    tree = ast.parse((ROOT / "smoothing.py").read_text(encoding="utf-8"))
    names = [a.name for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.module == "masking" for a in node.names]
    assert names and all(n.isupper() for n in names), names


def test_the_method_the_model_and_the_scripts_import_nothing_of_the_experiments():
    """experiments/ measures the method; nothing at the top level, the method's files and the scripts,
    may depend on it (tests and tutorial chapters may use it)."""
    core = [p for p in ROOT.glob("*.py") if p.name != "conftest.py"]
    importers = [p.name for p in core if "experiments" in imported(p)]
    assert len(core) >= 10 and importers == []
    assert {p.stem for p in (ROOT / "experiments").glob("*.py")} >= {"ablation", "transfer", "bench", "stats"}
