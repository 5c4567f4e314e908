"""Static export: every feed, page and the index as files a plain web server can serve.

The export is written into a temporary folder next to the target and renamed into place, so a
web server pointed at the target never sees a half-written tree.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from .documents import Document
from .site import FORMATS, Site

log = logging.getLogger(__name__)


def export_files(site: Site) -> dict[str, Document]:
    """Relative file path -> document, for everything the site serves."""
    files: dict[str, Document] = {"index.html": site.index_page()}
    for name in sorted(site.specs):
        for fmt in FORMATS:
            files[f"feeds/{name}.{fmt}"] = site.feed(name, fmt)
    for article in site.published():
        files[f"articles/{article.id}.html"] = site.page(article.id)
    return files


def build(site: Site, out: Path) -> int:
    """Write the export to ``out`` atomically; returns the number of documents written.

    Beside each file goes its ``.gz`` twin (nginx ``gzip_static``), byte-identical to what
    the app serves gzipped.
    """
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    files = export_files(site)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for rel, doc in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(doc.body)
            (target.parent / (target.name + ".gz")).write_bytes(doc.gzipped)
            stamp = doc.last_modified.timestamp()
            os.utime(target, (stamp, stamp))
            os.utime(target.parent / (target.name + ".gz"), (stamp, stamp))
        tmp.chmod(0o755)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %d documents to %s", len(files), out)
    return len(files)
