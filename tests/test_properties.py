"""Property-based tests: arbitrary Unicode in every article field and in topic names.

Whatever text a newsroom sends, parsing never raises, rendering never raises, both formats are
well-formed XML, Atom is valid against the RFC 4287 schema, feedparser reads them without
``bozo``, and the same input renders to the same bytes. Derandomized, so CI is deterministic.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from unittest import mock
from urllib.parse import quote

import feedparser
import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from lxml import etree
from test_conformance import atom_problems, rss_problems

from feeds import create_app
from feeds.articles import Article, SourceFile, Stamp, entry_id
from feeds.config import FeedSpec, SiteConfig, load_config
from feeds.jsonfeed import render_json
from feeds.links import subscription_links
from feeds.parsing import parse_article
from feeds.render import render_atom, render_rss
from feeds.site import open_site

from conftest import NOW, shared

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
SITE = {
    "site": {
        "title": "Testseite",
        "url": "https://news.example.org",
        "language": "de",
        "timezone": "Europe/Berlin",
        "author": "Redaktion",
    },
    "articles": "articles",
    "feeds": {"alle": {"title": "Alle"}, "kurz": {"title": "Kurz", "content": "summary"}},
}

# st.text() draws from every Unicode category except surrogates (which UTF-8 cannot carry).
text = st.text()
short = st.text(max_size=40)
moment = st.one_of(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(9998, 12, 31),
        timezones=st.sampled_from([UTC, None]),
    ),
    st.dates(),
    text,
)
# URL-shaped text reaches the code paths that keep or resolve links, not only the rejections.
url = st.one_of(
    text,
    st.builds(
        "{}{}".format,
        st.sampled_from(["https://", "http://", "/", "", "javascript:", "//", "mailto:", "HTTPS://ex.org/"]),
        text,
    ),
)
person = st.one_of(
    text,
    st.fixed_dictionaries({"name": text}, optional={"email": text, "uri": url}),
)
article_fields = st.fixed_dictionaries(
    {},
    optional={
        "id": text,
        "title": text,
        "date": moment,
        "updated": moment,
        "topics": st.one_of(text, st.lists(short, max_size=4)),
        "tags": st.one_of(text, st.lists(short, max_size=4)),
        "author": st.one_of(person, st.lists(person, max_size=3)),
        "summary": text,
        "language": text,
        "image": url,
        "link": url,
        "sources": st.one_of(text, st.lists(short, max_size=3)),
    },
)


@pytest.fixture(scope="module")
def site_config(tmp_path_factory: pytest.TempPathFactory) -> SiteConfig:
    root = tmp_path_factory.mktemp("props")
    (root / "articles").mkdir()
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(SITE), encoding="utf-8")
    return load_config(path)


@pytest.fixture(scope="module")
def specs(site_config: SiteConfig) -> dict[str, FeedSpec]:
    return open_site(str(site_config.path), lambda: NOW).specs


@pytest.fixture(scope="module")
def atom_schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(shared("schemas/atom.rng"))))


def front_matter(fields: dict, body: str) -> bytes:
    dumped = yaml.safe_dump(fields, allow_unicode=True, sort_keys=False) if fields else ""
    return f"---\n{dumped}---\n{body}".encode()


def check_feeds(spec: FeedSpec, site: SiteConfig, entries: list[Article], schema: etree.RelaxNG) -> None:
    """Both formats: no exception, well-formed, Atom valid, no bozo, same bytes twice."""
    updated = max((a.updated for a in entries), default=NOW)
    json_feed = render_json(spec, site, entries, subscription_links(site, spec.name, "json", 0))
    assert [item["id"] for item in json.loads(json_feed)["items"]] == [entry_id(site, a) for a in entries]
    for render in (render_rss, render_atom):
        body = render(spec, site, entries, updated=updated)
        assert render(spec, site, entries, updated=updated) == body, "rendering twice gave other bytes"
        tree = etree.fromstring(body)  # raises on anything not well-formed
        if render is render_atom:
            assert schema.validate(tree), schema.error_log
            assert not atom_problems(spec.name, tree)
        else:
            assert not rss_problems(spec.name, tree)
        parsed = feedparser.parse(body)
        assert not parsed.bozo, parsed.bozo_exception
        assert len(parsed.entries) == len(entries)


def _case(**fields: object) -> dict:
    return {"fields": fields, "body": "0", "suffix": "md", "folder": "", "mtime": 0}


@SETTINGS
@given(
    fields=article_fields,
    body=text,
    suffix=st.sampled_from(["md", "markdown", "txt"]),
    folder=st.sampled_from(["", "politik/", "Über see/"]),
    mtime=st.integers(min_value=0, max_value=2**31 - 1),
)
# Found by this test before; kept so they are tried on every run.
@example(**_case(date=date(1000, 1, 1)))  # 23:06:32 UTC on 999-12-31: a three-digit RFC 822 year
@example(**_case(link="http://[::1"))  # urlsplit raises ValueError("Invalid IPv6 URL")
@example(**_case(image="https://[x"))
@example(**_case(author={"name": "a", "uri": "https://[x"}))
@example(**_case(author={"name": "a", "uri": "HTTP:"}))  # a scheme without a host is no IRI
@example(**_case(author={"name": "a", "uri": "https://a b"}))
def test_any_text_in_any_field_parses_and_renders(
    site_config: SiteConfig,
    specs: dict[str, FeedSpec],
    atom_schema: etree.RelaxNG,
    fields: dict,
    body: str,
    suffix: str,
    folder: str,
    mtime: int,
) -> None:
    source = SourceFile(
        f"{folder}artikel.{suffix}", front_matter(fields, body), Stamp(len(body), mtime * 10**9)
    )
    article, problems = parse_article(source, site_config)
    assert parse_article(source, site_config) == (article, problems), "parsing is not pure"
    if article is None:
        assert problems, "an article left out must say why"
        return
    for topic in article.topics + article.tags:
        assert SLUG.match(topic.slug), topic
    for name in ("alle", "kurz"):
        check_feeds(specs[name], site_config, [article], atom_schema)


@SETTINGS
@given(
    raw=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "id",
                    "title",
                    "date",
                    "topics",
                    "tags",
                    "author",
                    "summary",
                    "updated",
                    "draft",
                    "link",
                    "image",
                ]
            ),
            text,
        ),
        max_size=6,
    ),
    body=text,
    front=st.booleans(),
    bom=st.booleans(),
    crlf=st.booleans(),
)
def test_raw_text_written_into_front_matter_never_raises(
    site_config: SiteConfig,
    specs: dict[str, FeedSpec],
    atom_schema: etree.RelaxNG,
    raw: list[tuple[str, str]],
    body: str,
    front: bool,
    bom: bool,
    crlf: bool,
) -> None:
    """Unescaped text pasted after ``key:``: bad YAML is a reported problem, never a crash."""
    lines = "".join(f"{key}: {value}\n" for key, value in raw)
    content = f"---\n{lines}---\n{body}" if front else body
    if crlf:
        content = content.replace("\n", "\r\n")
    data = (b"\xef\xbb\xbf" if bom else b"") + content.encode()
    article, problems = parse_article(SourceFile("roh/artikel.md", data), site_config)
    if article is None:
        assert problems
        return
    check_feeds(specs["alle"], site_config, [article], atom_schema)


@SETTINGS
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(
    site_config: SiteConfig, specs: dict[str, FeedSpec], atom_schema: etree.RelaxNG, data: bytes
) -> None:
    article, problems = parse_article(SourceFile("bytes.txt", data), site_config)
    if article is None:
        assert problems
        return
    check_feeds(specs["alle"], site_config, [article], atom_schema)


folder_name = st.text(min_size=1, max_size=30).filter(
    lambda s: (
        "/" not in s
        and "\x00" not in s
        and not s.startswith((".", "_"))
        and s.strip() == s
        and len(s.encode()) < 200
    )
)


# Every example writes files and starts an app: shrinking a failure would take half a minute,
# so this one reports the failing example as found (test_conformance has minimal repros).
@settings(SETTINGS, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(articles=st.lists(st.tuples(folder_name, article_fields, text), min_size=1, max_size=4))
def test_sites_written_as_files_serve_every_feed(
    atom_schema: etree.RelaxNG, articles: list[tuple[str, dict, str]]
) -> None:
    """Files on disk, arbitrary folder names as topics: every feed of the site is valid,
    served at a URL-safe name, and loading the same files twice gives the same bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for n, (folder, fields, body) in enumerate(articles):
            path = root / "articles" / folder / f"{n}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(front_matter(fields, body))
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump(SITE, allow_unicode=True), encoding="utf-8")
        site = open_site(str(config), lambda: NOW)
        again = open_site(str(config), lambda: NOW)
        with mock.patch.dict(os.environ, {"FEEDS_WATCH": "0"}):
            client = create_app(config, clock=lambda: NOW).test_client()
        for name in site.specs:
            assert SLUG.match(name), name
            for fmt in ("rss", "atom"):
                body = site.feed(name, fmt).body
                assert again.feed(name, fmt).body == body
                tree = etree.fromstring(body)
                if fmt == "atom":
                    assert atom_schema.validate(tree), atom_schema.error_log
                assert not feedparser.parse(body).bozo
                answer = client.get(f"/feeds/{quote(name)}.{fmt}")
                assert answer.status_code == 200, (name, answer.status_code)
                assert answer.data == body


@SETTINGS
@given(names=st.lists(text, min_size=1, max_size=5))
def test_any_topic_name_gets_a_url_safe_slug(site_config: SiteConfig, names: list[str]) -> None:
    fields = {"title": "T", "date": "2025-01-01", "topics": names, "tags": list(names)}  # no YAML alias
    article, _ = parse_article(SourceFile("a.md", front_matter(fields, "x")), site_config)
    assert article is not None
    for topic in article.topics + article.tags:
        assert topic.slug, topic
        assert SLUG.match(topic.slug), topic
        assert quote(topic.slug, safe="") == topic.slug
    assert len({t.slug for t in article.topics}) == len(article.topics)
