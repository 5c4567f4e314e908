"""The documentation's links lead somewhere, and the README's quick start is what CI runs.

The README is split into docs/; sections move and get renamed, and a link into a section that
is gone fails silently on GitHub (the page opens at the top). So every relative link in the
Markdown a reader meets (README.md, docs/, bench/, deploy/) must name a file of the repository
and, with a ``#fragment``, a heading of that file under GitHub's anchor rule. Absolute http(s)
links are not fetched: the suite runs without a network.

The quick start's two commands are what newcomers paste; CI runs the second one, so it must be
the very line ``.ci/run`` runs.
"""

from __future__ import annotations

import re
import shlex
import tomllib
import urllib.parse
from pathlib import Path

import pytest

from feeds.cli import cli

from conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
CI_SCRIPT = REPO / ".ci" / "run"
README_LINES = (150, 250)
DOCS_FILES = (
    "guide.md",
    "operations.md",
    "operators.md",
    "performance.md",
    "reliability.md",
    "development.md",
)


def documentation() -> list[Path]:
    """Every Markdown file a reader of the repository follows links in (not the demo articles)."""
    files = [README]
    for folder in ("docs", "bench", "deploy"):
        files += sorted((REPO / folder).glob("*.md"))
    return files


# -- a small reader of Markdown: headings, anchors, links ---------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_CODE_SPAN = re.compile(r"(`+)((?:(?!\n[ \t]*\n).)+?)\1", re.DOTALL)  # never across a blank line
_INLINE_LINK = re.compile(
    r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]"  # text (one level of nested brackets)
    r"\(\s*(<[^<>\n]*>|[^\s()<>]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)"
)
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^<>\n]*>|\S+)", re.MULTILINE)
_HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)=[\"']([^\"']+)[\"']", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_LINE_FRAGMENT = re.compile(r"^L\d+(?:-L\d+)?$")  # GitHub's line anchors in source files


def prose(text: str) -> str:
    """The text with fenced code blocks blanked out (line numbers kept): no links or headings there."""
    out: list[str] = []
    fence = ""
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = ""
            out.append("")
        elif match:
            fence = match.group(1)
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lowercased, punctuation but '-' and '_' dropped."""
    text = _INLINE_LINK.sub(lambda m: m.group(1), heading)  # a link in a heading anchors its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every fragment the rendered page has: one per heading (repeats get -1, -2, ...), HTML ids."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    body = prose(text)
    for line in body.splitlines():
        match = _HEADING.match(line)
        if not match:
            continue
        base = anchor(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    found.update(_HTML_ANCHOR.findall(body))
    return found


def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every inline link, image and link reference outside code."""
    body = _CODE_SPAN.sub(lambda m: "`" + re.sub(r"[^\n]", "x", m.group(2)) + "`", prose(text))
    found = [(m.start(), m.group(2)) for m in _INLINE_LINK.finditer(body)]
    found += [(m.start(), m.group(1)) for m in _REFERENCE.finditer(body)]
    return [(body.count("\n", 0, at) + 1, target.strip("<>")) for at, target in sorted(found)]


def broken_links(source: Path, root: Path) -> list[str]:
    """What is wrong with each relative link of ``source``, as ``file:line: target: why``."""
    problems: list[str] = []
    text = source.read_text(encoding="utf-8")
    for line, target in links(text):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # http(s), mailto: not fetched
        where = f"{source.relative_to(root)}:{line}: {target}"
        path_part, _, fragment = target.partition("#")
        path = urllib.parse.unquote(path_part)
        dest = (source.parent / path).resolve() if path else source.resolve()
        if path.startswith("/") or not dest.is_relative_to(root.resolve()):
            problems.append(f"{where}: leaves the repository")
            continue
        if not dest.exists():
            problems.append(f"{where}: no such file")
            continue
        if not fragment:
            continue
        fragment = urllib.parse.unquote(fragment)
        if dest.suffix == ".md":
            if fragment not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{where}: no heading #{fragment} in {dest.relative_to(root.resolve())}")
        elif dest.is_dir() or not _LINE_FRAGMENT.match(fragment):
            problems.append(f"{where}: #{fragment} names nothing in a file that is not Markdown")
    return problems


# -- the checker itself --------------------------------------------------------------------------


def test_anchors_follow_githubs_rule() -> None:
    text = (
        "# feeds\n## Two-command quick start\n## config.yaml\n## What readers get, compared\n"
        "### The whole history (RFC 5005 archived feeds)\n## `max_bytes` and [links](x.md)\n"
        "## Größe_und Maße\n## Setup\n## Setup\n```\n## not a heading\n```\n"
    )
    assert anchors(text) == {
        "feeds",
        "two-command-quick-start",
        "configyaml",
        "what-readers-get-compared",
        "the-whole-history-rfc-5005-archived-feeds",
        "max_bytes-and-links",
        "größe_und-maße",
        "setup",
        "setup-1",
    }


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    """The check fails on each way a link breaks, and passes the ones that work."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "feeds.service").write_text("[Unit]\n", encoding="utf-8")
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## config.yaml\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# feeds\n\n## Quick start\n\n"
        "[ok](docs/guide.md#configyaml) [ok](#quick-start) ![ok](deploy/feeds.service)\n"
        "[ok](deploy/feeds.service#L1) [web](https://example.org/#x) `[code](nowhere.md)`\n"
        "[gone](docs/operations.md) [moved](#production) [renamed](docs/guide.md#urls)\n"
        "[out](../shared/CONTRACT.md) [anchor](deploy/feeds.service#install)\n\n"
        "```\n[in a block](nowhere.md)\n```\n[ref]: docs/missing.md\n",
        encoding="utf-8",
    )
    assert broken_links(readme, tmp_path) == [
        "README.md:7: docs/operations.md: no such file",
        "README.md:7: #production: no heading #production in README.md",
        "README.md:7: docs/guide.md#urls: no heading #urls in docs/guide.md",
        "README.md:8: ../shared/CONTRACT.md: leaves the repository",
        "README.md:8: deploy/feeds.service#install: #install names nothing in a file that is not Markdown",
        "README.md:13: docs/missing.md: no such file",
    ]


# -- the repository's documentation ---------------------------------------------------------------


@pytest.mark.parametrize("doc", documentation(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(doc: Path) -> None:
    problems = broken_links(doc, REPO)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_split_docs_exist_and_lead_back_to_the_readme() -> None:
    """Each doc opens with its title and a one-line purpose that links back to the README."""
    for name in DOCS_FILES:
        lines = (DOCS / name).read_text(encoding="utf-8").split("\n\n", 2)
        assert lines[0].startswith("# "), f"docs/{name}: no title"
        assert "](../README.md)" in lines[1], f"docs/{name}: the purpose line does not link to the README"


def test_readme_stays_short() -> None:
    count = len(README.read_text(encoding="utf-8").splitlines())
    low, high = README_LINES
    assert low <= count <= high, f"README.md has {count} lines; keep {low}-{high}; the rest goes in docs/"


def quick_start() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Two-command quick start\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert section, "README.md has no '## Two-command quick start' section"
    block = re.search(r"^```sh\n(.*?)^```", section.group(1), re.MULTILINE | re.DOTALL)
    assert block, "README.md: no ```sh block in the quick start"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2, f"README.md: the quick start has {len(commands)} commands, not two"
    return commands


def ci_test_command() -> str:
    runs = [
        line.strip()
        for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines()
        if "pytest" in line and not line.lstrip().startswith("#")
    ]
    assert len(runs) == 1, f".ci/run: expected one line that runs pytest, found {runs}"
    return runs[0]


def test_the_readme_test_command_is_what_ci_runs() -> None:
    assert quick_start()[1] == ci_test_command()


def test_the_readme_serve_command_installs_like_ci_and_the_cli_takes_it() -> None:
    """The first command makes the venv as CI does (without the test extras) and then serves."""
    serve = quick_start()[0].split(" && ")
    ci = ci_test_command().split(" && ")
    assert len(serve) == 3 and len(ci) == 3, (serve, ci)
    assert serve[0] == ci[0]
    assert serve[1] == ci[1].replace("'.[test]'", "."), "the serve command installs something else than CI"
    program, *args = shlex.split(serve[2])
    assert program == ".venv/bin/feeds"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["feeds"] == "feeds.cli:cli"
    name, *rest = args  # no group options before the command
    assert name == "serve" and name in cli.commands
    assert cli.commands[name].make_context(name, rest).params["port"] == 8000


def test_pyproject_readme_is_the_readme() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["readme"] == "README.md" and (REPO / project["readme"]).is_file()
