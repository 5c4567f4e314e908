"""After a change, the notifier looks at what the change touched, and finds exactly what changed.

What changed is found the way a cache would see it: every document the site serves is fetched
before and after, and those whose ETag changed (or that appeared or went away) are the ones a
purge must name. Edits of every kind, on a site whose archives and sitemap have several pages,
are compared with what the notifier announced; and a single edit must not look at every
document (the walk that costs seconds at a million articles).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from feeds import create_app, indexing, inventory
from feeds.catalogue import ROBOTS, Kind
from feeds.documents import Document
from feeds.notify import Notifier, Outbox
from feeds.site import Site

from conftest import MakeSite, png

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
TOPICS = ("politik", "klima", "sport")
TAGS = ("Wahl", "Hitze", "Tor")
CONFIG = {
    "defaults": {"limit": 3},
    "cache": {"purge": ["http://127.0.0.1:9/"]},  # nothing listens: the announcements count
    "feeds": {
        "wahl": {"title": "Wahl", "tags": ["wahl"], "limit": 2},
        "spaet": {"title": "Später", "delay": 90, "limit": 2},
        "fenster": {"title": "Fenster", "window": 72},
    },
}


# A first paragraph longer than a summary: a paragraph added below it leaves the summary as it was.
LEAD = " ".join(f"Satz {n} der Meldung, der ihren Anfang erzählt." for n in range(8))


def article(a: dict[str, object]) -> str:
    """An article's file: its front matter and body, as the newsroom wrote it."""
    lines = ["---", f"id: {a['id']}", f"title: {a['title']}", f"date: {a['when'].isoformat()}"]  # type: ignore[attr-defined]
    if a["updated"]:
        lines.append(f"updated: {a['updated'].isoformat()}")  # type: ignore[attr-defined]
    if a["tags"]:
        lines.append(f"tags: [{', '.join(a['tags'])}]")  # type: ignore[arg-type]
    if a["summary"]:
        lines.append(f"summary: {a['summary']}")
    if a["image"]:
        lines.append(f"image: bilder/{a['id']}.png")
    if a["draft"]:
        lines.append("draft: true")
    return "\n".join([*lines, "---", str(a["body"]), ""])


KINDS = (
    "body", "title", "new", "backdated", "delete", "redate", "draft", "tags", "move", "duplicate",
    "embargo", "clock", "appendix", "touch", "summary", "updated", "picture",
)  # fmt: skip


class Newsroom:
    """A site under edit: the articles as the newsroom wrote them, the clock, and the app."""

    def __init__(self, make_site: MakeSite, tmp_path: Path, count: int = 18, body: str | None = None) -> None:
        self.rng = random.Random(20261206)
        self.now = [NOW]
        self.articles: dict[str, dict[str, object]] = {}
        files: dict[str, str | bytes] = {}
        for n in range(count):
            rel = f"{TOPICS[n % 3]}/a{n:02d}.md"
            self.articles[rel] = self._new(f"a{n:02d}", NOW - timedelta(hours=7 * n + 1))
            self.articles[rel]["body"] = body or self.articles[rel]["body"]
            files[rel] = article(self.articles[rel])
            if self.articles[rel]["image"]:
                files[self.picture(rel)] = png(2, 2)
        self.config = make_site(files, CONFIG)
        app = create_app(
            self.config, clock=lambda: self.now[0], watch=False, notify=False, state_dir=tmp_path / "state",
            sitemap_urls=4,
        )  # fmt: skip
        self.site: Site = app.extensions["feeds"]
        self.client: FlaskClient = app.test_client()
        self.notifier = Notifier(self.site, Outbox(delays=()))

    def reread(self) -> None:
        """Every article's body edited (a line added at its end, which shows nowhere): a cold
        start leaves the digests of the summaries unknown, which only an edit since gives."""
        for a in self.articles.values():
            a["body"] = f"{a['body']}\n"
        self.site.apply([path for rel in self.articles for path in self.write(rel)])

    def _new(self, ident: str, when: datetime) -> dict[str, object]:
        tags = sorted(self.rng.sample(TAGS, self.rng.randint(0, 2)))
        return {
            "id": ident,
            "title": f"Meldung {ident}",
            "when": when,
            "updated": None,
            "tags": tags,
            "summary": None,
            "image": self.rng.random() < 0.3,
            "draft": False,
            "body": LEAD if self.rng.random() < 0.5 else "Text.",
        }

    def picture(self, rel: str) -> str:
        """The picture an article shows (if its front matter names one), beside it."""
        return f"{rel.split('/')[0]}/bilder/{self.articles[rel]['id']}.png"

    def ident(self, rel: str) -> str:
        return str(self.articles[rel]["id"]) if rel in self.articles else ""

    def edit_body(self, rel: str, body: str) -> None:
        self.articles[rel]["body"] = body
        self.site.apply(self.write(rel))

    def write(self, rel: str) -> list[str]:
        path = self.config.parent / "articles" / rel
        if rel in self.articles:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(article(self.articles[rel]), encoding="utf-8")
        else:
            path.unlink()
        return [rel]

    def documents(self, known: Iterable[str] = ()) -> dict[str, str]:
        """Every document served now, by path, with its ETag; ``known``: paths a cache holds
        from before, asked again (a picture no entry shows any more is still served)."""
        site = self.site
        urls = [e.url for e in inventory.subscription_documents(site)]
        urls += [e.url for e in inventory.other_documents(site)]
        found: dict[str, str] = {}
        for path in sorted({urlsplit(url).path for url in urls} | set(known)):
            reply = self.client.get(path)
            if reply.status_code == 200:
                found[path] = reply.headers["ETag"]
        return found

    def edit(self, kind: str) -> list[str]:
        """One edit of the kinds a newsroom makes; the paths it wrote."""
        rng, rels = self.rng, sorted(self.articles)
        rel = rng.choice(rels)
        a = self.articles[rel]
        if kind == "body":
            a["body"] = f"Text, Fassung {rng.randint(1, 10**6)}."
        elif kind == "appendix":  # below a long first paragraph: the summary stays
            a["body"] = f"{a['body']}\n\nNoch ein Absatz, Fassung {rng.randint(1, 10**6)}."
        elif kind == "title":
            a["title"] = f"Meldung {a['id']}, berichtigt {rng.randint(1, 999)}"
        elif kind == "summary":
            a["summary"] = None if a["summary"] else f"Kurz gesagt, Fassung {rng.randint(1, 999)}."
        elif kind == "updated":
            a["updated"] = max(self.now[0], a["when"]) + timedelta(minutes=rng.randint(1, 90))  # type: ignore[type-var, operator]
        elif kind == "touch":  # the same bytes written again
            path = self.config.parent / "articles" / rel
            path.write_bytes(path.read_bytes())
            return [rel]
        elif kind == "picture":  # the picture replaced by one of another size (or added)
            a["image"] = True
            path = self.config.parent / "articles" / self.picture(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png(rng.randint(3, 9), 2))
            return [self.picture(rel), *self.write(rel)]
        elif kind in ("new", "backdated", "embargo"):
            ident = f"n{len(self.articles):03d}{rng.randint(0, 999)}"
            hours = {
                "new": -rng.uniform(0, 2),
                "backdated": rng.uniform(20, 120),
                "embargo": -rng.uniform(1, 3),
            }
            rel = f"{rng.choice(TOPICS)}/{ident}.md"
            self.articles[rel] = self._new(ident, self.now[0] - timedelta(hours=hours[kind]))
            self.articles[rel]["image"] = False
        elif kind == "delete":
            if sum(r.startswith(rel.split("/")[0]) for r in rels) > 2:  # every topic keeps a feed
                del self.articles[rel]
            else:
                a["body"] = "Gekürzt."
        elif kind == "redate":
            a["when"] = self.now[0] - timedelta(hours=rng.uniform(0, 150))
            a["updated"] = None
        elif kind == "draft":
            a["draft"] = not a["draft"]
        elif kind == "tags":
            a["tags"] = sorted(rng.sample(TAGS, rng.randint(0, 2)))
        elif kind == "move":
            topic = rng.choice([t for t in TOPICS if not rel.startswith(t)])
            if sum(r.startswith(rel.split("/")[0]) for r in rels) > 2:
                moved = f"{topic}/{rel.split('/')[1]}"
                self.articles[moved] = self.articles.pop(rel)
                return self.write(rel) + self.write(moved)
        elif kind == "duplicate":
            a["id"] = rng.choice([str(b["id"]) for b in self.articles.values()])
        elif kind == "clock":  # an embargo ends, a delay or a window passes: no file changes
            self.now[0] += timedelta(hours=rng.uniform(0.5, 3))
            return []
        return self.write(rel)


@pytest.fixture
def newsroom(make_site: MakeSite, tmp_path: Path) -> Iterator[Newsroom]:
    room = Newsroom(make_site, tmp_path)
    room.reread()
    yield room
    room.notifier.close(timeout=0.1)


def announced(newsroom: Newsroom, rendered: list[str] | None = None) -> list[str]:
    """The paths a look of the notifier announces; the kinds of document it rendered go to
    ``rendered``."""
    site = newsroom.site
    document = site.document

    def render(kind: Kind, params: dict[str, str], keep: bool = True) -> Document:
        if rendered is not None:
            rendered.append(kind.place.kind)
        return document(kind, params, keep)

    site.document = render  # type: ignore[method-assign]
    try:
        return sorted(urlsplit(url).path for url in newsroom.notifier.sweep())
    finally:
        del site.document


def test_every_kind_of_edit_announces_exactly_the_documents_it_changed(
    newsroom: Newsroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edits that change bytes (a title, a date, a picture's size, an entry coming or going)
    and edits that change none of some documents' (a paragraph added below a summary, which a
    summary-only feed, the pages and the index do not show; a tag, which an article page does
    not show; a file touched): the documents announced are those a crawler sees change, found
    from what each document shows, without rendering any (robots.txt aside)."""
    walks: list[int] = []
    every = inventory.other_documents

    def counted(site: Site) -> Iterator[inventory.Entry]:
        walks.append(1)
        return every(site)

    rendered: list[str] = []
    assert announced(newsroom, rendered) == []  # the first look learns
    before = newsroom.documents()
    assert any("/archive/" in p for p in before) and any(p.startswith("/sitemaps/") for p in before)
    assert any(p.startswith("/media/") for p in before)
    monkeypatch.setattr(inventory, "other_documents", counted)
    kinds: list[str] = []
    quiet: list[str] = []  # edits that changed no document at all
    for _ in range(3):
        for kind in newsroom.rng.sample(KINDS, len(KINDS)):
            paths = newsroom.edit(kind)
            kinds.append(kind)
            if paths:
                newsroom.site.apply(paths)
            sent = announced(newsroom, rendered)
            monkeypatch.setattr(inventory, "other_documents", every)
            after = newsroom.documents(before)
            monkeypatch.setattr(inventory, "other_documents", counted)
            expected = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
            assert sent == expected, f"after {kind} (edits: {kinds})"
            if not expected:
                quiet.append(kind)
            before = after
    assert set(rendered) <= {ROBOTS.place.kind}, "a document was rendered to tell whether it changed"
    assert "touch" in quiet
    assert len(walks) <= 4, f"{len(walks)} of {len(kinds)} changes looked at every document"


def test_an_edit_below_the_summary_changes_the_content_feeds_and_the_article_page_only(
    newsroom: Newsroom,
) -> None:
    """A paragraph added to a long body: the feeds carrying content and the article's page
    change; the summary-only feed, the feeds' pages, the index and the sitemaps do not."""
    rel = next(
        r for r, a in sorted(newsroom.articles.items()) if str(a["body"]).startswith(LEAD) and not a["draft"]
    )
    topic, ident = rel.split("/")[0], newsroom.ident(rel)
    assert announced(newsroom) == []
    before = newsroom.documents()
    assert any(p.startswith("/feeds/kurz") for p in before)
    rendered: list[str] = []
    newsroom.edit_body(rel, f"{LEAD}\n\nEin Satz mehr.")
    sent = announced(newsroom, rendered)
    after = newsroom.documents(before)
    assert sent == sorted(p for p in after if before.get(p) != after[p])
    assert f"/articles/{ident}" in sent and f"/feeds/{topic}.atom" in sent
    assert not any(p.startswith("/feeds/kurz") or p in ("/", f"/feeds/{topic}") for p in sent)
    assert set(rendered) <= {ROBOTS.place.kind}


@pytest.mark.parametrize("summarized", [True, False])
def test_after_a_cold_start_an_edit_below_the_summary_purges_no_summary_only_feed(
    make_site: MakeSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, summarized: bool
) -> None:
    """A cold start renders no bodies but those of the entries summary-only feeds show, for
    their summaries' digests. Without them (``summarized`` False: an entry that comes into such
    a feed later) the feed is rendered when its key moves, and its ETag decides. Either way an
    edit below the summary purges exactly what changed, and touching the file nothing."""
    if not summarized:
        monkeypatch.setattr(indexing, "SUMMARIZED", 0)
    room = Newsroom(make_site, tmp_path, body=LEAD)
    try:
        rel = "politik/a00.md"  # the newest: in kurz
        assert announced(room) == []
        before = room.documents()
        rendered: list[str] = []
        room.edit_body(rel, f"{LEAD}\n\nEin Satz mehr.")
        sent = announced(room, rendered)
        after = room.documents(before)
        assert sent == sorted(p for p in after if before.get(p) != after[p])
        assert "/articles/a00" in sent and not any(p.startswith("/feeds/kurz") for p in sent)
        assert ("feed" in rendered) is not summarized  # kurz, to tell
        path = room.config.parent / "articles" / rel
        stamp = path.stat()
        os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
        room.site.apply([rel])
        rendered.clear()
        assert announced(room, rendered) == []
        room.edit_body(rel, f"{LEAD}\n\nZwei Sätze mehr.")  # its summary's digest known now
        before, sent = after, announced(room, rendered)
        after = room.documents(before)
        assert sent == sorted(p for p in after if before.get(p) != after[p])
        assert set(rendered) <= {ROBOTS.place.kind}
    finally:
        room.notifier.close(timeout=0.1)


def test_one_edit_looks_at_its_documents_only(newsroom: Newsroom, monkeypatch: pytest.MonkeyPatch) -> None:
    assert announced(newsroom) == []
    monkeypatch.setattr(inventory, "other_documents", lambda site: pytest.fail("a walk of every document"))
    rel = "klima/a01.md"
    newsroom.articles[rel]["title"] = "Berichtigt"
    newsroom.site.apply(newsroom.write(rel))
    sent = announced(newsroom)
    assert "/articles/a01" in sent and "/feeds/klima.atom" in sent and "/feeds/alle.rss" in sent
    assert not any(p.startswith("/feeds/politik") for p in sent)  # not in that feed: not looked at
