"""The ``feeds`` command: serve, check, index, list, build, get and stats, over the same snapshot."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import click

from . import catalogue, logs
from .app import create_app, state_dir_for
from .config import config_path_from_env, load_config
from .errors import ConfigError, Problem, Severity
from .export import Survey, survey_ahead
from .export import build as build_export
from .links import feed_page_url, feed_url, opml_url
from .live import open_store
from .outfolder import ExportRefused, check_target
from .sightings import FeedOf, count_logs, read_log
from .site import AUDIENCE, FORMATS, Site, open_site, utc_now
from .sources import read_source
from .stamping import stamp_dates
from .stats import render_html, render_json, render_text, summarize
from .store import TAG, TOPIC, AudienceStore, Ledger


def _open(path: Path) -> Site:
    """The site as the server sees it: same state folder, so the same first-seen dates."""
    return open_site(path, state_dir=state_dir_for(path))


def _load(ctx: click.Context) -> Site:
    try:
        return _open(ctx.obj)
    except ConfigError as exc:
        raise click.ClickException(f"config is not valid:\n{exc}") from None


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="config.yaml to use (default: $FEEDS_CONFIG or ./config.yaml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every event, not only warnings.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Publish per-topic RSS and Atom feeds from stored articles."""
    logs.configure(logging.INFO if verbose else logging.WARNING)
    ctx.obj = config_path_from_env(config_path)


@cli.command()
@click.pass_context
def index(ctx: click.Context) -> None:
    """Build the article index for this version of feeds, beside the running version's.

    Run it with new code before reloading the server onto it (docs/operations.md, "Upgrades"):
    the new workers then open a ready index instead of building one. Exit 1 if the state folder
    cannot hold it.
    """
    path = ctx.obj
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise click.ClickException(f"config is not valid:\n{exc}") from None
    state = state_dir_for(path)
    ledger = Ledger(state / "validators.sqlite")
    started = time.perf_counter()
    try:
        store, trusted, reason = open_store(config, state, ledger, utc_now)
    finally:
        ledger.close()
    try:
        if reason is not None:
            raise click.ClickException(f"the index could not be written to {state}: {reason}")
        with store.read() as reader:
            count = reader.count()
        how = "already built" if trusted else f"built in {time.perf_counter() - started:.1f} s"
        click.echo(f"{store.file}: {count} articles, {how}")
    finally:
        store.close()


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Serve the site with the development server (production: granian, see the README)."""
    logging.getLogger().setLevel(logging.INFO)
    try:
        app = create_app(ctx.obj)
    except ConfigError as exc:
        raise click.ClickException(f"config is not valid:\n{exc}") from None
    click.echo(f"Serving {ctx.obj} on http://{host}:{port}/")
    app.run(host=host, port=port, threaded=True)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object for CI pipelines.",
)
@click.option(
    "--stamp-dates",
    is_flag=True,
    help="Write the date each article without one was first seen into its file (first_seen:), "
    "so it survives copies, restores and other machines. Entry ids do not change.",
)
@click.pass_context
def check(ctx: click.Context, fmt: str, stamp_dates: bool) -> None:
    """Validate the config and every article; exit 1 if anything is an error."""
    problems: list[Problem]
    try:
        site = _open(ctx.obj)
        if stamp_dates:
            written = _stamp_dates(site)
            click.echo(f"wrote first_seen into {written} article(s)", err=fmt == "json")
            if written:
                site = _open(ctx.obj)
        problems = list(site.problems()) + _shadowed_topics(site) + _spellings(site) + _trimmed_feeds(site)
        counts = {
            "articles": len(site.all_articles()),
            "published": sum(1 for _ in site.published()),
            "feeds": len(site.specs),
        }
    except ConfigError as exc:
        problems, counts = list(exc.problems), {}
    errors = sum(p.severity is Severity.ERROR for p in problems)
    warnings = len(problems) - errors
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "ok": errors == 0,
                    "errors": errors,
                    "warnings": warnings,
                    **counts,
                    "problems": [
                        {"file": p.path, "line": p.line, "severity": p.severity.value, "message": p.message}
                        for p in problems
                    ],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        for problem in problems:
            click.echo(str(problem), err=problem.severity is Severity.ERROR)
        summary = ", ".join(f"{v} {k}" for k, v in counts.items())
        click.echo(f"{summary + ': ' if summary else ''}{errors} errors, {warnings} warnings")
    if errors:
        sys.exit(1)


def _stamp_dates(site: Site) -> int:
    """Write ``first_seen`` into every file whose article has no date; the count written."""
    written = 0
    for path, reason in stamp_dates(site.config, site.all_articles()):
        if reason is None:
            written += 1
        else:
            click.echo(f"{path}: first_seen not written: {reason}", err=True)
    return written


def _trimmed_feeds(site: Site) -> list[Problem]:
    """Feeds that had to shed content or entries to stay under their max_bytes."""
    found = []
    for name, spec in site.specs.items():
        for fmt in FORMATS:
            note = site.feed(name, fmt).note
            if note:
                message = f"feed '{name}' ({fmt}, max_bytes {spec.max_bytes}): {note}"
                found.append(Problem(str(site.config.path), None, message, Severity.WARNING))
    return found


def _spellings(site: Site) -> list[Problem]:
    """Topics and tags the articles write several ways: readers see one name, said here which."""
    titled = {t.slug: t.title for t in site.config.topic_names}
    found = []
    with site.read() as (reader, _):
        for kind in (TOPIC, TAG):
            for key, spelled in reader.variants(kind).items():
                title = titled.get(key) if kind == TOPIC else None
                ways = ", ".join(f"{name!r} ({n})" for name, n in spelled)
                shown = f"{title!r}, its title under topics:" if title else repr(spelled[0][0])
                message = (
                    f"{kind} {key!r} is spelled {len(spelled)} ways (articles): {ways}; "
                    f"every feed and page shows {shown}"
                )
                # Point at an article that writes it another way (a folder's name has no line).
                other = next((n for n, _ in spelled[1:] if n != key), spelled[-1][0])
                rel = reader.spelled_in(kind, key, other)
                where = _line_of(site.config.articles_dir, rel, other) if rel else None
                path = str(site.config.articles_dir / rel) if rel else str(site.config.path)
                found.append(Problem(path, where, message, Severity.WARNING))
    return found


def _line_of(root: Path, rel: str, text: str) -> int | None:
    """The first line of the article's front matter that holds ``text`` (a topic's spelling)."""
    try:
        source = read_source(root, rel, 1 << 20)
    except OSError:
        return None
    lines = source.data.decode("utf-8", "replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for number, line in enumerate(lines[1:200], start=2):
        if line.strip() == "---":
            return None
        if text in line:
            return number
    return None


def _shadowed_topics(site: Site) -> list[Problem]:
    if not site.config.topic_feeds:
        return []
    operator = {spec.name for spec in site.config.feeds}
    return [
        Problem(
            str(site.config.path),
            None,
            f"feed '{name}' has the name of topic '{name}', so the topic has no feed of its own",
            Severity.WARNING,
        )
        for name in sorted(set(site.topics()) & operator)
    ]


@cli.command(name="list")
@click.pass_context
def list_feeds(ctx: click.Context) -> None:
    """List every feed with its entry count and URLs."""
    site = _load(ctx)
    for spec in site.specs.values():
        kind = "topic" if spec.is_topic_feed else "feed"
        entries = len(site.feed_entries(spec))
        archived = site.archived(spec)
        pages = f", {archived} archive page{'s' * (archived != 1)}" if archived else ""
        click.echo(f"{spec.name}\t{kind}\t{entries} entries{pages}\t{spec.title}")
        click.echo(f"  {feed_page_url(site.config, spec.name)}")
        for fmt in FORMATS:
            click.echo(f"  {feed_url(site.config, spec.name, fmt)}")
    click.echo(f"all feeds as OPML\t{opml_url(site.config)}")


@contextlib.contextmanager
def _surveying(out: Path, full: bool) -> Iterator[Future[Survey | None] | None]:
    """The survey of an export about to be updated, made in a process of its own while this one
    opens the site (both take seconds at a million articles); None where that cannot start."""
    if full or not out.is_dir():
        yield None
        return
    try:
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    except (OSError, ValueError) as exc:
        logging.getLogger(__name__).info("surveying %s in this process (%s)", out, exc)
        yield None
        return
    with pool:
        yield pool.submit(survey_ahead, out)


@cli.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    help="Also build into a folder that is not an earlier export; the files in it are kept.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Render and write every document, reusing no file of the earlier export.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Render on this many processes when a build has many documents to render (a first "
    "build); each opens the site again (about 130 MB, at 100,000 as at a million articles).",
)
@click.pass_context
def build(ctx: click.Context, out: Path, force: bool, full: bool, jobs: int) -> None:
    """Export every feed, page and the index into OUT (replaced atomically).

    Documents unchanged since the export in OUT was built are taken over from it. Only files
    an earlier build wrote are ever removed; OUT must not hold the config, the articles or the
    state folder.
    """
    try:
        target = check_target(load_config(ctx.obj), state_dir_for(ctx.obj), out)  # before reading articles
        with _surveying(target, full) as ahead:
            done = build_export(_load(ctx), out, force=force, full=full, ahead=ahead, workers=jobs)
    except ConfigError as exc:
        raise click.ClickException(f"config is not valid:\n{exc}") from None
    except ExportRefused as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"could not write the export to {out}: {exc}") from None
    click.echo(
        f"exported {done.documents} documents to {out} in {done.seconds:.1f} s: {done.rendered} rendered, "
        f"{done.written} written, {done.reused} unchanged (linked from the earlier export)"
    )


@cli.command()
@click.argument("path")
@click.pass_context
def get(ctx: click.Context, path: str) -> None:
    """Print what the server would answer for PATH; exit 1 unless it is a 200."""
    try:
        app = create_app(ctx.obj)
    except ConfigError as exc:
        raise click.ClickException(f"config is not valid:\n{exc}") from None
    response = app.test_client().get(path)
    sys.stdout.buffer.write(response.get_data())
    if response.status_code != 200:
        click.echo(f"{path}: {response.status}", err=True)
        sys.exit(1)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object, with every day counted.",
)
@click.option(
    "--html",
    "html",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a page with a chart of subscribers per feed over time to this file.",
)
@click.option(
    "--log",
    "logs_",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Count the requests in access logs (combined format: nginx, varnishncsa; .gz too) first. "
    "Give every log of a day in one run.",
)
@click.argument("more_logs", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def stats(
    ctx: click.Context, fmt: str, html: Path | None, logs_: tuple[Path, ...], more_logs: tuple[Path, ...]
) -> None:
    """Subscribers per feed: today, the change over 7 and 30 days, and by source.

    The server counts the requests for feeds it answers; behind a cache, which answers most of
    them, count the cache's access logs: --log FILE... (after --log, any number of files).
    """
    if more_logs and not logs_:
        raise click.UsageError(f"unexpected argument {more_logs[0]}: name access logs after --log")
    try:
        config = load_config(ctx.obj)
    except ConfigError as exc:
        raise click.ClickException(f"config is not valid:\n{exc}") from None
    today = datetime.now(UTC).date()
    extra: dict[str, object] = {}
    if logs_:
        site = _load(ctx)
        store = site.audience.store
        files = [*logs_, *more_logs]
        found = count_logs(((str(p), _log_lines(p)) for p in files), _feed_of(site), today)
        store.merge(found.counts)
        extra["log"] = {
            "files": len(files),
            "lines": found.lines,
            "counted": found.counted,
            "malformed": found.malformed,
            "outside": found.outside,
        }
        if fmt == "text":
            click.echo(
                f"{len(files)} access log(s), {found.lines} lines: {found.counted} requests for feeds "
                f"counted, {found.malformed} malformed, {found.outside} from days not kept"
            )
    else:
        store = AudienceStore(state_dir_for(ctx.obj) / AUDIENCE)
    store.settle(today)
    summary = summarize(store.counts(), store.current(today), today)
    click.echo(render_json(summary, **extra) if fmt == "json" else render_text(summary), nl=False)
    if html is not None:
        _write_page(html, render_html(summary, config.title))
        click.echo(f"wrote {html}", err=fmt == "json")


def _log_lines(path: Path) -> Iterator[str]:
    try:
        yield from read_log(path)
    except (OSError, EOFError, zlib.error) as exc:
        raise click.ClickException(f"could not read the access log {path}: {exc}") from None


def _feed_of(site: Site) -> FeedOf:
    """A request path (as a log has it, under the site's path) -> (feed, format), for feeds that exist."""
    names, prefix = frozenset(site.specs), site.config.path_prefix

    def feed_of(path: str) -> tuple[str, str] | None:
        if prefix:
            if not path.startswith(prefix + "/"):
                return None
            path = path[len(prefix) :]
        found = catalogue.route(path)
        if found is None or found[0] is not catalogue.FEED or found[1]["name"] not in names:
            return None
        return found[1]["name"], found[1]["fmt"]

    return feed_of


def _write_page(path: Path, body: bytes) -> None:
    """Written whole or not at all: a web server may be serving the page meanwhile."""
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        out = open(part, "xb")  # never a file someone else made (nor a link planted there)
    except OSError as exc:
        raise click.ClickException(f"could not write {path}: {exc.strerror or exc}") from None
    try:
        with out:
            out.write(body)
        os.replace(part, path)
    except OSError as exc:
        part.unlink(missing_ok=True)  # ours: made above
        raise click.ClickException(f"could not write {path}: {exc.strerror or exc}") from None
