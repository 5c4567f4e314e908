"""The tests stand on their own: nothing under tests/ imports from bench/ (issue 16).

The benchmark scripts may change for a measurement at any time; a test that imported them would
break with them, or pass only with bench/ on sys.path. What the two share (servers on loopback,
the soak) lives in tests/support, and the scripts under bench/ import it from there.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

TESTS = REPO / "tests"
BENCH = REPO / "bench"
# Calls and settings that make modules importable by name: a bench/ folder in them is the harm.
_PATH_CALLS = {"insert", "append", "extend", "syspath_prepend"}
_PATH_WORDS = ("PYTHONPATH", "--pythonpath", "--working-dir", "--chdir")


def bench_modules() -> set[str]:
    """Top-level names a file of bench/ can be imported by once bench/ is on sys.path."""
    return {"bench"} | {path.stem for path in BENCH.glob("*.py")}


def bench_uses(source: str, modules: set[str]) -> list[str]:
    """Lines of ``source`` that import a bench/ module or put bench/ where imports look.

    A name bound to an expression that mentions bench (``BENCH = REPO / "bench"``) counts as
    bench wherever it is used later.
    """
    tree = ast.parse(source)
    tainted: set[str] = set()

    def mentions_bench(node: ast.AST) -> bool:
        return any(
            (isinstance(sub, ast.Constant) and isinstance(sub.value, str) and "bench" in sub.value.lower())
            or (isinstance(sub, ast.Name) and sub.id in tainted)
            for sub in ast.walk(node)
        )

    def is_bench(name: str) -> bool:
        return name.split(".")[0] in modules

    def called(node: ast.Call) -> str:
        func = node.func
        return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")

    def is_word(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and node.value in _PATH_WORDS

    def harmful(node: ast.AST) -> bool:
        if isinstance(node, ast.Import):
            return any(is_bench(alias.name) for alias in node.names)
        if isinstance(node, ast.ImportFrom):
            return not node.level and is_bench(node.module or "")
        if isinstance(node, ast.Call):
            name, args = called(node), [a.value for a in node.args if isinstance(a, ast.Constant)]
            if name in {"import_module", "__import__", "run_module"}:
                return any(isinstance(a, str) and is_bench(a) for a in args)
            on_path = name in _PATH_CALLS and "path" in ast.unparse(node.func)
            return (on_path or name in {"spec_from_file_location", "run_path"}) and mentions_bench(node)
        if isinstance(node, ast.AugAssign):
            return "sys.path" in ast.unparse(node.target) and mentions_bench(node.value)
        if isinstance(node, ast.Dict):  # an environment: {"PYTHONPATH": ...}
            return any(is_word(k) and mentions_bench(v) for k, v in zip(node.keys, node.values, strict=True))
        if isinstance(node, ast.List | ast.Tuple):  # a command line: [..., "--pythonpath", "bench"]
            return any(is_word(a) and mentions_bench(b) for a, b in itertools.pairwise(node.elts))
        if isinstance(node, ast.Assign):  # environ["PYTHONPATH"] = ...
            keys = [t.slice for t in node.targets if isinstance(t, ast.Subscript)]
            return any(is_word(k) for k in keys) and mentions_bench(node.value)
        return False

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value and mentions_bench(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            tainted |= {t.id for t in targets if isinstance(t, ast.Name)}
    return sorted(
        {f"line {node.lineno}: {ast.unparse(node)[:120]}" for node in ast.walk(tree) if harmful(node)}
    )


def test_no_test_imports_from_bench() -> None:
    modules = bench_modules()
    problems = {
        str(path.relative_to(REPO)): uses
        for path in sorted(TESTS.rglob("*.py"))
        if (uses := bench_uses(path.read_text(encoding="utf-8"), modules))
    }
    assert problems == {}, "tests must not import from bench/ (share code through tests/support)"


@pytest.mark.parametrize(
    "source",
    [
        # what tests/conftest.py did before issue 16
        """
        BENCH = REPO / "bench"
        if str(BENCH) not in sys.path:
            sys.path.insert(0, str(BENCH))
        """,
        "sys.path.append(str(Path(__file__).parent.parent / 'bench'))",
        "sys.path += [os.path.join(ROOT, 'bench')]",
        "monkeypatch.syspath_prepend(REPO / 'bench')",
        "import harness",  # bench/harness.py's old name: no such file in bench/ any more, see below
        "import soak",
        "from run import bare_app",
        "import bench.generate",
        "from bench import soak",
        "generate = importlib.import_module('generate')",
        "spec = importlib.util.spec_from_file_location('soak', REPO / 'bench' / 'soak.py')",
        "runpy.run_path('bench/burst.py')",
        "env = {'PYTHONPATH': str(REPO / 'bench')}",
        "environ['PYTHONPATH'] = f'{REPO}/bench'",
        "cmd = ['gunicorn', '--pythonpath', 'bench', 'naive_app:app']",
    ],
)
def test_the_check_finds_every_way_in(source: str) -> None:
    modules = bench_modules() | {"harness"}
    assert bench_uses(textwrap.dedent(source), modules), source


@pytest.mark.parametrize(
    "source",
    [
        "from support import harness",
        "from support.soak import check_document",
        "import runner_helpers",
        'doc = "bench/SOAK.md describes the soak"',
        'env = {"PYTHONPATH": str(TESTS)}',
        "sys.path.insert(0, str(TESTS))",
        "for folder in ('docs', 'bench', 'deploy'): files += sorted((REPO / folder).glob('*.md'))",
    ],
)
def test_the_check_lets_the_rest_pass(source: str) -> None:
    assert bench_uses(source, bench_modules() | {"harness"}) == [], source


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py") if p.name != "naive_app.py"))
def test_every_bench_script_still_finds_what_it_imports(script: str) -> None:
    """The scripts import the harness and the soak from tests/support: they must still start."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO.parent,  # not the repository: nothing may depend on where it is started
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
