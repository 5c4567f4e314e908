"""The file-system edge of articles: which files are articles, and reading them.

Everything here touches the disk; everything it calls (``parse_article``) does not.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from stat import S_ISREG

from .articles import SUFFIXES, Article, SourceFile, parse_article
from .config import SiteConfig
from .errors import Problem

log = logging.getLogger(__name__)


def iter_sources(root: Path) -> Iterator[str]:
    """Article files under ``root`` as POSIX paths relative to it, sorted, skipping names that
    start with '.' or '_'."""
    top = str(root)
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        base = os.path.relpath(folder, top).replace(os.sep, "/")
        base = "" if base == "." else base + "/"
        for name in sorted(files):
            if not name.startswith((".", "_")) and name.lower().endswith(SUFFIXES):
                yield base + name


_IMAGE = re.compile(rb"^image:[ \t]*['\"]?([^'\"\n#]+?)['\"]?[ \t]*$", re.MULTILINE)


def read_source(root: Path, rel: str) -> SourceFile:
    """Read ``rel`` (relative to ``root``), with what parsing needs to know of the disk."""
    path = os.path.join(root, rel)
    with open(path, "rb") as fh:
        stat = os.fstat(fh.fileno())
        if not S_ISREG(stat.st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
        data = fh.read()
    sizes: dict[str, int] = {}
    image = _IMAGE.search(data, 0, 4096)
    if image:
        name = image.group(1).decode("utf-8", "replace").strip()
        candidate = (root / name).resolve()
        if candidate.is_relative_to(root.resolve()) and candidate.is_file():
            sizes[name] = candidate.stat().st_size
    return SourceFile(rel, data, stat.st_mtime, sizes, stat.st_mtime_ns)


def load_articles(site: SiteConfig) -> tuple[list[Article], list[Problem]]:
    """Every readable article under the site's folder (drafts included), and every problem.

    Two files claiming one id would show one story twice; the second (by path) is left out.
    """
    root = site.articles_dir
    articles: list[Article] = []
    problems: list[Problem] = []
    by_id: dict[str, str] = {}
    for rel in iter_sources(root):
        try:
            source = read_source(root, rel)
        except OSError as exc:
            problems.append(Problem(rel, None, f"cannot read file: {exc.strerror or exc}; left out"))
            continue
        article, found = parse_article(source, site)
        problems.extend(found)
        if article is None:
            continue
        if article.id in by_id:
            problems.append(
                Problem(rel, None, f"id {article.id!r} is already used by {by_id[article.id]}; left out")
            )
            continue
        by_id[article.id] = rel
        articles.append(article)
    for problem in problems:
        log.warning("article problem: %s", problem)
    return articles, problems
