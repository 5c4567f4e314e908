"""Every feed of the demo site and of a seeded hostile corpus, checked against the specs.

Atom: the RFC 4287 RELAX NG schema (read from ../shared, never copied) plus the rules RELAX NG
cannot express. RSS 2.0: the spec's required elements and the RSS Advisory Board's Best
Practices Profile. feedparser: what a real consumer makes of the bytes. Each test walks every
feed of a site and reports every violation at once, named by feed.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import anyfeed
import feedparser
import lxml.html
import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree

from feeds import create_app
from feeds.site import Site, open_site

import hostile
from conftest import DEMO_CONFIG, NOW, shared

ATOM = "http://www.w3.org/2005/Atom"
HISTORY = "http://purl.org/syndication/history/1.0"  # RFC 5005
CONTENT = "http://purl.org/rss/1.0/modules/content/"
NS = {"a": ATOM, "content": CONTENT}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
SITE_URL = "https://news.example.org/"
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
# RFC 822 (as amended by RFC 1123: four-digit year), with a numeric or named zone.
RFC822 = re.compile(
    r"^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d{1,2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}(?::\d{2})? (?:[+-]\d{4}|GMT|UT|[ECMP][SD]T)$"
)
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
IRI_FORBIDDEN = re.compile(r'[\s<>"{}|\\^`\x00-\x1f\x7f]')
URL_ATTRIBUTES = (
    "href",
    "src",
    "action",
    "formaction",
    "poster",
    "cite",
    "data",
    "background",
    "longdesc",
    "usemap",
    "manifest",
    "xlink:href",
    "{http://www.w3.org/1999/xlink}href",
)
UNSAFE_ELEMENTS = {
    "script",
    "style",
    "iframe",
    "object",
    "embed",
    "form",
    "base",
    "meta",
    "link",
    "frame",
    "frameset",
    "applet",
}
DEMO_SECRETS = ("DRAFT-SECRET", "EMBARGO-SECRET")
DEMO_HIDDEN = ("haushaltsentwurf-entwurf", "quartalszahlen-embargo")


@dataclass
class Published:
    """One site at NOW and everything readers can fetch from it."""

    name: str
    config: Path
    site: Site
    secrets: tuple[str, ...]
    hidden_ids: tuple[str, ...]
    state: Path
    empty_feeds: tuple[str, ...] = ()
    _trees: dict[tuple[str, str], etree._Element] = field(default_factory=dict)

    def feeds(self) -> Iterator[tuple[str, str, bytes]]:
        for name in sorted(self.site.specs):
            for fmt in ("rss", "atom"):
                yield name, fmt, self.site.feed(name, fmt).body

    def tree(self, name: str, fmt: str) -> etree._Element:
        key = (name, fmt)
        if key not in self._trees:
            self._trees[key] = etree.fromstring(self.site.feed(name, fmt).body)
        return self._trees[key]

    def client(self) -> FlaskClient:
        return quiet_app(self.config, self.state).test_client()


def quiet_app(config: Path, state: Path) -> Flask:
    """An app pinned to NOW, without a file watcher, keeping its state out of the repository."""
    with mock.patch.dict(os.environ, {"FEEDS_WATCH": "0", "FEEDS_STATE_DIR": str(state)}):
        return create_app(config, clock=lambda: NOW)


@pytest.fixture(scope="module", params=["demo", "hostile"])
def published(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Published:
    state = tmp_path_factory.mktemp("state")
    if request.param == "demo":
        return Published(
            "demo", DEMO_CONFIG, open_site(str(DEMO_CONFIG), lambda: NOW), DEMO_SECRETS, DEMO_HIDDEN, state
        )
    corpus = hostile.generate(tmp_path_factory.mktemp("hostile"), hostile.SEED)
    return Published(
        "hostile",
        corpus.config,
        open_site(str(corpus.config), lambda: NOW),
        corpus.secrets,
        corpus.hidden_ids,
        state,
        corpus.empty_feeds,
    )


@pytest.fixture(scope="module")
def atom_schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(shared("schemas/atom.rng"))))


def feed_url(name: str, fmt: str) -> str:
    return f"{SITE_URL}feeds/{name}.{fmt}"


def report(problems: list[str]) -> str:
    shown = problems[:40]
    more = f"\n... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    return f"{len(problems)} problem(s):\n" + "\n".join(shown) + more


# --- IRIs and HTML inside entries ------------------------------------------------------------


def iri_problem(value: str | None, *, web: bool) -> str | None:
    """Why ``value`` is not an absolute IRI (``web``: one a reader may follow), or None."""
    if value is None or not value.strip():
        return "empty IRI"
    if IRI_FORBIDDEN.search(value):
        return f"not a valid IRI (space, control or forbidden character): {value[:80]!r}"
    if not SCHEME.match(value):
        return f"relative IRI {value[:80]!r}"
    parts = urlsplit(value)
    if web and parts.scheme.lower() not in ("http", "https", "mailto"):
        return f"unsafe scheme in {value[:80]!r}"
    if parts.scheme.lower() in ("http", "https") and not parts.netloc:
        return f"no host in {value[:80]!r}"
    return None


def html_problems(fragment: str | None) -> list[str]:
    """Relative or unsafe URLs, scripts and event handlers in an HTML fragment."""
    if not fragment or not fragment.strip():
        return []
    root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    problems = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        tag = element.tag.lower()
        if tag in UNSAFE_ELEMENTS:
            problems.append(f"<{tag}> in content")
        for attr, value in element.attrib.items():
            name = str(attr).lower()
            if name.startswith("on"):
                problems.append(f"event handler {name}= on <{tag}>")
            if "javascript:" in re.sub(r"\s", "", value).lower():
                problems.append(f"javascript: in {name}= on <{tag}>")
            if name in URL_ATTRIBUTES:
                if (why := iri_problem(value, web=True)) is not None:
                    problems.append(f"<{tag} {name}>: {why}")
            if name == "srcset":
                for candidate in value.split(","):
                    url = candidate.strip().split(" ")[0]
                    if url and (why := iri_problem(url, web=True)) is not None:
                        problems.append(f"<{tag} srcset>: {why}")
    return problems


# --- Atom ------------------------------------------------------------------------------------


def test_atom_is_valid_against_the_rfc4287_schema(published: Published, atom_schema: etree.RelaxNG) -> None:
    problems = []
    for name, fmt, _ in published.feeds():
        if fmt != "atom":
            continue
        if not atom_schema.validate(published.tree(name, fmt)):
            errors = "; ".join(f"line {e.line}: {e.message}" for e in list(atom_schema.error_log)[:3])
            problems.append(f"{name}.atom: {errors}")
    assert not problems, report(problems)


def _atom_date(element: etree._Element | None, where: str, problems: list[str]) -> datetime | None:
    if element is None or not (element.text or "").strip():
        problems.append(f"{where}: missing")
        return None
    if not RFC3339.match(element.text):
        problems.append(f"{where}: {element.text!r} is not an RFC 3339 date-time with a zone")
        return None
    return datetime.fromisoformat(element.text)


def _alternates(parent: etree._Element, where: str, problems: list[str]) -> list[etree._Element]:
    links = parent.findall("a:link", NS)
    seen = Counter(
        (link.get("type"), link.get("hreflang"))
        for link in links
        if link.get("rel", "alternate") == "alternate"
    )
    for (kind, lang), count in seen.items():
        if count > 1:
            problems.append(
                f"{where}: {count} alternate links with type={kind} hreflang={lang} "
                "(RFC 4287 4.1.1/4.1.2 allow one)"
            )
    return links


def atom_problems(name: str, feed: etree._Element) -> list[str]:
    """What RELAX NG cannot say about one Atom feed (RFC 4287 sections 4.1-4.2)."""
    problems: list[str] = []
    where = f"{name}.atom"
    links = _alternates(feed, where, problems)
    selfs = [link for link in links if link.get("rel") == "self"]
    if len(selfs) != 1:
        problems.append(f"{where}: {len(selfs)} rel=self links, expected exactly one")
    elif selfs[0].get("href") != feed_url(name, "atom"):
        problems.append(f"{where}: rel=self is {selfs[0].get('href')!r}, served at {feed_url(name, 'atom')}")
    iris = [(f"{where} id", feed.findtext("a:id", namespaces=NS), False)]
    iris += [(f"{where} link", link.get("href"), True) for link in links]
    for tag in ("icon", "logo"):
        iris += [(f"{where} {tag}", e.text, True) for e in feed.findall(f"a:{tag}", NS)]
    feed_updated = _atom_date(feed.find("a:updated", NS), f"{where} <updated>", problems)
    feed_has_author = feed.find("a:author", NS) is not None
    entries = feed.findall("a:entry", NS)
    ids = Counter(e.findtext("a:id", namespaces=NS) for e in entries)
    problems += [f"{where}: entry id {i!r} used {n} times" for i, n in ids.items() if n > 1]
    newest = None
    for position, entry in enumerate(entries):
        at = f"{where} entry {position} ({entry.findtext('a:id', namespaces=NS)})"
        iris.append((f"{at} id", entry.findtext("a:id", namespaces=NS), False))
        entry_links = _alternates(entry, at, problems)
        iris += [(f"{at} link", link.get("href"), True) for link in entry_links]
        for person in entry.findall("a:author", NS) + entry.findall("a:contributor", NS):
            iris += [(f"{at} author uri", u.text, True) for u in person.findall("a:uri", NS)]
        updated = _atom_date(entry.find("a:updated", NS), f"{at} <updated>", problems)
        if entry.find("a:published", NS) is not None:
            published = _atom_date(entry.find("a:published", NS), f"{at} <published>", problems)
            if published and updated and published > updated:
                problems.append(f"{at}: published {published} after updated {updated}")
        if updated and (newest is None or updated > newest):
            newest = updated
        content = entry.find("a:content", NS)
        if content is None and not any(link.get("rel", "alternate") == "alternate" for link in entry_links):
            problems.append(f"{at}: neither content nor an alternate link (RFC 4287 4.1.2)")
        if not feed_has_author and entry.find("a:author", NS) is None:
            problems.append(f"{at}: no author, and the feed has none (RFC 4287 4.1.1)")
        for text in (content, entry.find("a:summary", NS), entry.find("a:title", NS)):
            if text is not None and text.get("type") == "html":
                problems += [f"{at} <{etree.QName(text).localname}>: {p}" for p in html_problems(text.text)]
    if feed_updated and newest and feed_updated != newest:
        problems.append(f"{where}: feed <updated> {feed_updated} is not the newest entry's {newest}")
    for label, value, web in iris:
        if (why := iri_problem(value, web=web)) is not None:
            problems.append(f"{label}: {why}")
    return problems


def test_atom_rules_relax_ng_cannot_express(published: Published) -> None:
    problems = []
    for name, fmt, _ in published.feeds():
        if fmt == "atom":
            problems += atom_problems(name, published.tree(name, fmt))
    assert not problems, report(problems)


# --- RSS 2.0 and the RSS Best Practices Profile -----------------------------------------------


def _rss_date(text: str | None, where: str, problems: list[str]) -> datetime | None:
    if text is None:
        return None
    if not RFC822.match(text):
        problems.append(f"{where}: {text!r} is not an RFC 822 date with a four-digit year and a zone")
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        problems.append(f"{where}: {text!r} does not parse as an RFC 822 date")
        return None
    if moment.tzinfo is None:
        problems.append(f"{where}: {text!r} has no zone")
        return None
    return moment


def rss_problems(name: str, rss: etree._Element) -> list[str]:
    problems: list[str] = []
    where = f"{name}.rss"
    if rss.tag != "rss" or rss.get("version") != "2.0":
        return [f"{where}: root is <{rss.tag} version={rss.get('version')!r}>, expected <rss version='2.0'>"]
    channels = rss.findall("channel")
    if len(channels) != 1:
        return [f"{where}: {len(channels)} <channel> elements"]
    channel = channels[0]
    for tag in ("title", "link", "description"):
        found = channel.findall(tag)
        if len(found) != 1 or not (found[0].text or "").strip():
            problems.append(f"{where}: channel needs exactly one non-empty <{tag}>, has {len(found)}")
    urls = [(f"{where} channel <link>", channel.findtext("link"))]
    urls += [(f"{where} <docs>", d.text) for d in channel.findall("docs")]
    urls += [
        (f"{where} <image><{t}>", image.findtext(t))
        for image in channel.findall("image")
        for t in ("url", "link")
    ]
    languages = channel.findall("language")
    if len(languages) != 1:
        problems.append(f"{where}: {len(languages)} <language> elements, expected one")
    elif not LANGUAGE_TAG.match(languages[0].text or ""):
        problems.append(f"{where}: <language> {languages[0].text!r} is not a language tag")
    selfs = [link for link in channel.findall("a:link", NS) if link.get("rel") == "self"]
    if len(selfs) != 1:
        problems.append(f"{where}: {len(selfs)} atom:link rel=self, expected exactly one")
    elif selfs[0].get("href") != feed_url(name, "rss") or selfs[0].get("type") != "application/rss+xml":
        problems.append(f"{where}: atom:link rel=self {dict(selfs[0].attrib)} does not match the served URL")
    build = _rss_date(channel.findtext("lastBuildDate"), f"{where} <lastBuildDate>", problems)
    _rss_date(channel.findtext("pubDate"), f"{where} channel <pubDate>", problems)
    ttl = channel.findtext("ttl")
    if ttl is not None and not ttl.isdigit():
        problems.append(f"{where}: <ttl> {ttl!r} is not a number of minutes")
    guids = Counter()
    for position, item in enumerate(channel.findall("item")):
        at = f"{where} item {position} ({item.findtext('guid')})"
        if not (item.findtext("title") or "").strip() and not (item.findtext("description") or "").strip():
            problems.append(f"{at}: neither title nor description")
        for tag in ("title", "link", "description", "guid", "pubDate", "author", "comments", "source"):
            if len(item.findall(tag)) > 1:
                problems.append(f"{at}: {len(item.findall(tag))} <{tag}> elements")
        urls += [(f"{at} <link>", item.findtext("link"))]
        urls += [(f"{at} <comments>", c.text) for c in item.findall("comments")]
        urls += [(f"{at} <source url>", s.get("url")) for s in item.findall("source")]
        for enclosure in item.findall("enclosure"):
            urls.append((f"{at} <enclosure url>", enclosure.get("url")))
            if not (enclosure.get("length") or "").isdigit() or not enclosure.get("type"):
                problems.append(
                    f"{at}: <enclosure> needs url, a numeric length and a type: {dict(enclosure.attrib)}"
                )
        guid = item.find("guid")
        if guid is not None:
            guids[guid.text] += 1
            if guid.get("isPermaLink", "true") == "true":  # the default is true (RSS 2.0)
                if (why := iri_problem(guid.text, web=True)) is not None or urlsplit(
                    guid.text or ""
                ).scheme not in ("http", "https"):
                    problems.append(f"{at}: guid is a permalink but not an http(s) URL ({why})")
        for author in item.findall("author"):
            if "@" not in (author.text or ""):
                problems.append(f"{at}: <author> {author.text!r} is not an email address")
        published = _rss_date(item.findtext("pubDate"), f"{at} <pubDate>", problems)
        if published and build and published > build:
            problems.append(f"{at}: pubDate {published} after lastBuildDate {build}")
        for tag, html in (
            ("description", item.findtext("description")),
            ("content:encoded", item.findtext("content:encoded", namespaces=NS)),
        ):
            problems += [f"{at} <{tag}>: {p}" for p in html_problems(html)]
    problems += [f"{where}: guid {g!r} used {n} times" for g, n in guids.items() if n > 1]
    for label, value in urls:
        if (why := iri_problem(value, web=True)) is not None:
            problems.append(f"{label}: {why}")
    return problems


def test_rss_has_required_elements_and_follows_best_practices(published: Published) -> None:
    problems = []
    for name, fmt, _ in published.feeds():
        if fmt == "rss":
            problems += rss_problems(name, published.tree(name, fmt))
    assert not problems, report(problems)


# --- feedparser: what a consumer sees --------------------------------------------------------


def _entry_key(entry: feedparser.FeedParserDict) -> tuple[str, str]:
    return entry.get("id", ""), entry.get("link", "")


def test_feedparser_reads_every_feed_cleanly(published: Published) -> None:
    problems = []
    for name, fmt, body in published.feeds():
        parsed = feedparser.parse(body)
        where = f"{name}.{fmt}"
        if parsed.bozo:
            problems.append(f"{where}: bozo: {parsed.bozo_exception!r}")
        expected = {"rss": "rss20", "atom": "atom10"}[fmt]
        if parsed.version != expected:
            problems.append(f"{where}: feedparser sees version {parsed.version!r}, expected {expected}")
        for position, entry in enumerate(parsed.entries):
            missing = [key for key in ("id", "link", "title") if not entry.get(key)]
            if not (entry.get("published_parsed") or entry.get("updated_parsed")):
                missing.append("a parsed date")
            if missing:
                problems.append(f"{where} entry {position} ({entry.get('id')}): no {', '.join(missing)}")
    assert not problems, report(problems)


def test_rss_and_atom_of_a_feed_have_the_same_entries_in_the_same_order(published: Published) -> None:
    problems = []
    for name in sorted(published.site.specs):
        rss = feedparser.parse(published.site.feed(name, "rss").body)
        atom = feedparser.parse(published.site.feed(name, "atom").body)
        rss_keys = [_entry_key(e) for e in rss.entries]
        atom_keys = [_entry_key(e) for e in atom.entries]
        if rss_keys != atom_keys:
            problems.append(f"{name}: RSS {rss_keys[:5]}... != Atom {atom_keys[:5]}...")
        rss_dates = [e.get("published_parsed") for e in rss.entries]
        atom_dates = [e.get("published_parsed") for e in atom.entries]
        if rss_dates != atom_dates:
            problems.append(f"{name}: RSS and Atom publication dates differ")
        enclosures = [[x.get("href") for x in e.get("enclosures", [])] for e in rss.entries]
        atom_enclosures = [[x.get("href") for x in e.get("enclosures", [])] for e in atom.entries]
        if enclosures != atom_enclosures:
            problems.append(f"{name}: enclosures differ: RSS {enclosures} Atom {atom_enclosures}")
    assert not problems, report(problems)


def test_entries_are_newest_first_with_ids_unique(published: Published) -> None:
    problems = []
    for name in sorted(published.site.specs):
        entries = feedparser.parse(published.site.feed(name, "atom").body).entries
        stamps = [e.published_parsed for e in entries]
        if stamps != sorted(stamps, reverse=True):
            problems.append(f"{name}: entries not newest first")
    assert not problems, report(problems)


# --- the publishing rules --------------------------------------------------------------------


def test_drafts_embargoes_and_ignored_files_are_absent(published: Published) -> None:
    """CONTRACT: a draft or a future date is published nowhere (no feed, page, index)."""
    client = published.client()
    documents: dict[str, bytes] = {"/": client.get("/").data}
    for name, fmt, body in published.feeds():
        documents[f"/feeds/{name}.{fmt}"] = body
    for article in published.site.published():
        documents[f"/articles/{article.id}"] = published.site.page(article.id).body
    problems = [
        f"{path}: contains {secret!r}"
        for path, body in documents.items()
        for secret in published.secrets
        if secret.encode() in body or secret.lower().encode() in body
    ]
    for article_id in published.hidden_ids:
        answer = client.get(f"/articles/{article_id}")
        if answer.status_code != 404:
            problems.append(f"/articles/{article_id}: {answer.status_code}, expected 404")
    visible = {a.id for a in published.site.published()}
    problems += [f"{i} is visible" for i in published.hidden_ids if i in visible]
    assert not problems, report(problems)


def test_every_feed_and_page_is_served(published: Published) -> None:
    client = published.client()
    paths = ["/"] + [f"/feeds/{n}.{f}" for n in published.site.specs for f in ("rss", "atom")]
    paths += [f"/articles/{a.id}" for a in published.site.published()]
    problems = [f"{p}: {code}" for p in paths if (code := client.get(p).status_code) != 200]
    assert not problems, report(problems)


def test_empty_feed_is_valid_and_dated(published: Published, atom_schema: etree.RelaxNG) -> None:
    for name in published.empty_feeds:
        atom = published.tree(name, "atom")
        assert atom.findall("a:entry", NS) == []
        assert atom_schema.validate(atom), atom_schema.error_log
        assert atom.findtext("a:updated", namespaces=NS)
        assert published.tree(name, "rss").findall("channel/item") == []
        assert feedparser.parse(published.site.feed(name, "rss").body).bozo == 0


# --- the hostile corpus itself ---------------------------------------------------------------


def test_hostile_corpus_is_reproducible(tmp_path: Path) -> None:
    def snapshot(root: Path) -> dict[str, bytes]:
        corpus = hostile.generate(root, hostile.SEED)
        files = {
            p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }
        return files | {"#feed": open_site(str(corpus.config), lambda: NOW).feed("alle", "atom").body}

    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def test_hostile_corpus_covers_its_hazards(tmp_path: Path) -> None:
    corpus = hostile.generate(tmp_path, hostile.SEED)
    site = open_site(str(corpus.config), lambda: NOW)
    entries = feedparser.parse(site.feed("alle", "atom").body).entries
    titles = [e.title for e in entries]
    assert any(len(t) >= 10_000 for t in titles)
    assert any("🦊" in t for t in titles) and any("مرحبا" in t for t in titles)
    assert any("Größenwahn" in t for t in titles)
    assert b"]]&gt;" in site.feed("alle", "atom").body
    assert [e.get("tags") for e in entries if e.title == "Ohne Thema"] == [None]  # no topics
    assert sum(1 for e in entries if e.title.startswith("Doppelte ID")) == 1  # one survives
    assert any("Ohne Datum" in t for t in titles)
    assert any("UTF-8" in p.message for p in site.problems())
    assert not feedparser.parse(site.feed(hostile.EMPTY_FEED, "rss").body).entries


@pytest.mark.parametrize(
    "field", ["site.title", "site.description", "site.author", "feeds.alle.title", "feeds.alle.description"]
)
def test_control_characters_in_config_never_break_a_feed(tmp_path: Path, field: str) -> None:
    """An operator pasting text with a control character gets a repaired feed or a config
    error at load, never a 500 on the first request."""
    (tmp_path / "articles").mkdir()
    (tmp_path / "articles" / "a.md").write_text("---\ntitle: A\ndate: 2025-01-01\n---\nText\n")
    config = {"site": {"title": "T", "url": SITE_URL, "author": "A"}, "feeds": {"alle": {"title": "Alle"}}}
    section, key = field.rsplit(".", 1)
    target = config
    for part in section.split("."):
        target = target[part]
    target[key] = "Text\x0bmit\x01Steuerzeichen"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    try:
        client = quiet_app(path, tmp_path / "state").test_client()
    except Exception as exc:  # a clear config error is an acceptable answer
        assert type(exc).__name__ == "ConfigError", repr(exc)
        return
    for fmt in ("rss", "atom"):
        answer = client.get(f"/feeds/alle.{fmt}")
        assert answer.status_code == 200, (fmt, answer.status_code)
        assert not feedparser.parse(answer.data).bozo
    assert client.get("/").status_code == 200


@pytest.mark.parametrize(
    "line",
    [
        'link: "http://[::1"',
        'image: "https://[x"',
        'author: {name: A, uri: "https://[x"}',
        'link: "https://ex.org:99999/"',
        'image: "http://[::1]:x/"',
    ],
)
def test_unparsable_urls_in_front_matter_never_break_the_site(tmp_path: Path, line: str) -> None:
    """urlsplit raises ValueError on some URLs; one such article must not take the site down."""
    articles = tmp_path / "articles"
    articles.mkdir()
    (articles / "gut.md").write_text("---\ntitle: Gut\ndate: 2025-01-01\n---\nText\n", encoding="utf-8")
    (articles / "kaputt.md").write_text(
        f"---\ntitle: Kaputt\ndate: 2025-01-02\n{line}\n---\nText\n", encoding="utf-8"
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"site": {"title": "T", "url": SITE_URL}, "feeds": {"alle": {}}}), encoding="utf-8"
    )
    client = quiet_app(config, tmp_path / "state").test_client()
    for fmt in ("rss", "atom"):
        answer = client.get(f"/feeds/alle.{fmt}")
        assert answer.status_code == 200
        parsed = feedparser.parse(answer.data)
        assert not parsed.bozo
        assert "Gut" in [e.title for e in parsed.entries]
        problems = (
            atom_problems("alle", etree.fromstring(answer.data))
            if fmt == "atom"
            else rss_problems("alle", etree.fromstring(answer.data))
        )
        assert not problems, report(problems)


@pytest.mark.parametrize("folder", ["\x08", "Steuer\x1bzeichen", "tab\there", "\ufffe"])
def test_control_characters_in_folder_names_never_break_a_feed(tmp_path: Path, folder: str) -> None:
    """A folder name is a topic name (and part of the default id): it reaches feed titles."""
    article = tmp_path / "articles" / folder / "a.md"
    article.parent.mkdir(parents=True)
    article.write_text("---\ntitle: A\ndate: 2025-01-01\n---\nText\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"site": {"title": "T", "url": SITE_URL}, "feeds": {"alle": {}}}), encoding="utf-8"
    )
    client = quiet_app(config, tmp_path / "state").test_client()
    index = client.get("/")
    assert index.status_code == 200
    feeds = sorted(set(re.findall(r'href="(/feeds/[^"]+)"', index.data.decode())))
    assert len(feeds) == 8  # alle and the folder's topic: three formats and the page
    for path in feeds:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        if "." in path.rpartition("/")[2]:
            assert not anyfeed.parse(answer.data).bozo


# --- the other documents: JSON Feed, archive pages, OPML ---------------------------------------


def test_every_json_feed_follows_the_json_feed_rules(published: Published) -> None:
    from test_jsonfeed import problems as json_feed_problems

    found = []
    for name in sorted(published.site.specs):
        found += [f"{name}.json: {p}" for p in json_feed_problems(published.site.feed(name, "json").body)]
    assert not found, report(found)


def test_every_archive_page_is_valid_and_says_it_is_one(
    published: Published, atom_schema: etree.RelaxNG
) -> None:
    site = published.site
    problems: list[str] = []
    checked = 0
    for name, spec in sorted(site.specs.items()):
        for page in range(1, site.archived(spec) + 1):
            atom = etree.fromstring(site.archive(name, page, "atom").body)
            if not atom_schema.validate(atom):
                problems.append(f"{name} archive {page}: {atom_schema.error_log}")
            rels = {link.get("rel"): link.get("href") for link in atom.findall(f"{{{ATOM}}}link")}
            if rels.get("current") != feed_url(name, "atom") or atom.find(f"{{{HISTORY}}}archive") is None:
                problems.append(f"{name} archive {page}: no current link or fh:archive")
            rss = site.archive(name, page, "rss").body
            problems += [
                f"{name} archive {page}.rss: {p}"
                for p in rss_problems(name, etree.fromstring(rss))
                if "self" not in p
            ]
            for fmt in ("rss", "atom"):
                parsed = feedparser.parse(site.archive(name, page, fmt).body)
                if parsed.bozo:
                    problems.append(f"{name} archive {page}.{fmt}: {parsed.get('bozo_exception')}")
            checked += 1
    assert not problems, report(problems)
    if published.name == "demo":
        assert checked  # the demo's headline feed (limit 10) has archive pages


def test_opml_lists_every_feed_once(published: Published) -> None:
    opml = etree.fromstring(published.site.opml().body)
    urls = [o.get("xmlUrl") for o in opml.iter("outline") if o.get("type") == "rss"]
    assert sorted(urls) == sorted(feed_url(name, "atom") for name in published.site.specs)
