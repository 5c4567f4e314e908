"""The ``feeds`` command: serve, check, list, build and get, all over the same snapshot."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from .app import state_dir_for
from .config import config_path_from_env
from .errors import ConfigError, Problem, Severity
from .export import ExportRefused
from .export import build as build_export
from .render import feed_url
from .site import Site, open_site


def _load(ctx: click.Context) -> Site:
    try:
        return open_site(str(ctx.obj))
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
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = config_path_from_env(config_path)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Serve the site with the development server (use gunicorn in production)."""
    from .app import create_app

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
@click.pass_context
def check(ctx: click.Context, fmt: str) -> None:
    """Validate the config and every article; exit 1 if anything is an error."""
    problems: list[Problem]
    try:
        site = open_site(str(ctx.obj))
        problems = list(site.problems()) + _shadowed_topics(site)
        counts = {
            "articles": len(site.all_articles()),
            "published": len(site.published()),
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
        click.echo(f"{spec.name}\t{kind}\t{entries} entries\t{spec.title}")
        for fmt in ("rss", "atom"):
            click.echo(f"  {feed_url(site.config, spec.name, fmt)}")


@cli.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    help="Also build into a folder that is not an earlier export; the files in it are kept.",
)
@click.pass_context
def build(ctx: click.Context, out: Path, force: bool) -> None:
    """Export every feed, page and the index into OUT (replaced atomically).

    Only files an earlier build wrote are ever removed; OUT must not hold the config, the
    articles or the state folder.
    """
    site = _load(ctx)
    try:
        # The site is opened without a state folder, but the server's must be safe all the same.
        count = build_export(site, out, force=force, protect=[state_dir_for(Path(ctx.obj))])
    except ExportRefused as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"could not write the export to {out}: {exc}") from None
    click.echo(f"wrote {count} documents to {out}")


@cli.command()
@click.argument("path")
@click.pass_context
def get(ctx: click.Context, path: str) -> None:
    """Print what the server would answer for PATH; exit 1 unless it is a 200."""
    from .app import create_app

    try:
        app = create_app(ctx.obj)
    except ConfigError as exc:
        raise click.ClickException(f"config is not valid:\n{exc}") from None
    response = app.test_client().get(path)
    sys.stdout.buffer.write(response.get_data())
    if response.status_code != 200:
        click.echo(f"{path}: {response.status}", err=True)
        sys.exit(1)
