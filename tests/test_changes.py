"""After a change, the notifier looks at what the change touched, and finds exactly what changed.

What changed is found the way a cache would see it: every document the site serves is fetched
before and after, and those whose ETag changed (or that appeared or went away) are the ones a
purge must name. Edits of every kind, on a site whose archives and sitemap have several pages,
are compared with what the notifier announced; and a single edit must not look at every
document (the walk that costs seconds at a million articles).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from feeds import create_app, inventory
from feeds.notify import Notifier, Outbox
from feeds.site import Site

from conftest import MakeSite

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


def article(ident: str, title: str, when: datetime, tags: list[str], draft: bool, body: str) -> str:
    lines = ["---", f"id: {ident}", f"title: {title}", f"date: {when.isoformat()}"]
    if tags:
        lines.append(f"tags: [{', '.join(tags)}]")
    if draft:
        lines.append("draft: true")
    return "\n".join([*lines, "---", body, ""])


class Newsroom:
    """A site under edit: the articles as the newsroom wrote them, the clock, and the app."""

    def __init__(self, make_site: MakeSite, tmp_path: Path, count: int = 18) -> None:
        self.rng = random.Random(20261206)
        self.now = [NOW]
        self.articles: dict[str, dict[str, object]] = {}
        for n in range(count):
            self.articles[f"{TOPICS[n % 3]}/a{n:02d}.md"] = self._new(
                f"a{n:02d}", NOW - timedelta(hours=7 * n + 1)
            )
        self.config = make_site({rel: self._text(a) for rel, a in self.articles.items()}, CONFIG)
        app = create_app(
            self.config, clock=lambda: self.now[0], watch=False, notify=False, state_dir=tmp_path / "state",
            sitemap_urls=4,
        )  # fmt: skip
        self.site: Site = app.extensions["feeds"]
        self.client: FlaskClient = app.test_client()
        self.notifier = Notifier(self.site, Outbox(delays=()))

    def _new(self, ident: str, when: datetime) -> dict[str, object]:
        tags = sorted(self.rng.sample(TAGS, self.rng.randint(0, 2)))
        return {
            "id": ident,
            "title": f"Meldung {ident}",
            "when": when,
            "tags": tags,
            "draft": False,
            "body": "Text.",
        }

    @staticmethod
    def _text(a: dict[str, object]) -> str:
        return article(
            str(a["id"]), str(a["title"]), a["when"], list(a["tags"]), bool(a["draft"]), str(a["body"])
        )  # type: ignore[arg-type]

    def ident(self, rel: str) -> str:
        return str(self.articles[rel]["id"]) if rel in self.articles else ""

    def write(self, rel: str) -> list[str]:
        path = self.config.parent / "articles" / rel
        if rel in self.articles:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self._text(self.articles[rel]), encoding="utf-8")
        else:
            path.unlink()
        return [rel]

    def documents(self) -> dict[str, str]:
        """Every document served now, by path, with its ETag."""
        site = self.site
        urls = [e.url for e in inventory.subscription_documents(site)]
        urls += [e.url for e in inventory.other_documents(site)]
        found: dict[str, str] = {}
        for url in urls:
            path = urlsplit(url).path
            reply = self.client.get(path)
            if reply.status_code == 200:
                found[path] = reply.headers["ETag"]
        return found

    def edit(self) -> tuple[str, list[str]]:
        """One edit of the kinds a newsroom makes; what it was and the paths it wrote."""
        rng, rels = self.rng, sorted(self.articles)
        rel = rng.choice(rels)
        a = self.articles[rel]
        kind = rng.choice(
            ["body", "title", "new", "backdated", "delete", "redate", "draft", "tags", "move", "duplicate",
             "embargo", "clock"]
        )  # fmt: skip
        if kind == "body":
            a["body"] = f"Text, Fassung {rng.randint(1, 10**6)}."
        elif kind == "title":
            a["title"] = f"Meldung {a['id']}, berichtigt {rng.randint(1, 999)}"
        elif kind in ("new", "backdated", "embargo"):
            ident = f"n{len(self.articles):03d}{rng.randint(0, 999)}"
            hours = {
                "new": -rng.uniform(0, 2),
                "backdated": rng.uniform(20, 120),
                "embargo": -rng.uniform(1, 3),
            }
            rel = f"{rng.choice(TOPICS)}/{ident}.md"
            self.articles[rel] = self._new(ident, self.now[0] - timedelta(hours=hours[kind]))
        elif kind == "delete":
            if sum(r.startswith(rel.split("/")[0]) for r in rels) > 2:  # every topic keeps a feed
                del self.articles[rel]
            else:
                a["body"] = "Gekürzt."
        elif kind == "redate":
            a["when"] = self.now[0] - timedelta(hours=rng.uniform(0, 150))
        elif kind == "draft":
            a["draft"] = not a["draft"]
        elif kind == "tags":
            a["tags"] = sorted(rng.sample(TAGS, rng.randint(0, 2)))
        elif kind == "move":
            topic = rng.choice([t for t in TOPICS if not rel.startswith(t)])
            if sum(r.startswith(rel.split("/")[0]) for r in rels) > 2:
                moved = f"{topic}/{rel.split('/')[1]}"
                self.articles[moved] = self.articles.pop(rel)
                return kind, self.write(rel) + self.write(moved)
        elif kind == "duplicate":
            a["id"] = rng.choice([str(b["id"]) for b in self.articles.values()])
        elif kind == "clock":  # an embargo ends, a delay or a window passes: no file changes
            self.now[0] += timedelta(hours=rng.uniform(0.5, 3))
            return kind, []
        return kind, self.write(rel)


@pytest.fixture
def newsroom(make_site: MakeSite, tmp_path: Path) -> Iterator[Newsroom]:
    room = Newsroom(make_site, tmp_path)
    yield room
    room.notifier.close(timeout=0.1)


def announced(newsroom: Newsroom) -> list[str]:
    return sorted(urlsplit(url).path for url in newsroom.notifier.sweep())


def test_every_kind_of_edit_announces_exactly_the_documents_it_changed(
    newsroom: Newsroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    walks: list[int] = []
    every = inventory.other_documents

    def counted(site: Site) -> Iterator[inventory.Entry]:
        walks.append(1)
        return every(site)

    assert announced(newsroom) == []  # the first look learns
    before = newsroom.documents()
    assert any("/archive/" in p for p in before) and any(p.startswith("/sitemaps/") for p in before)
    monkeypatch.setattr(inventory, "other_documents", counted)
    kinds = []
    for _ in range(40):
        kind, paths = newsroom.edit()
        kinds.append(kind)
        if paths:
            newsroom.site.apply(paths)
        sent = announced(newsroom)
        monkeypatch.setattr(inventory, "other_documents", every)
        after = newsroom.documents()
        monkeypatch.setattr(inventory, "other_documents", counted)
        expected = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
        # An article page is known by its file's content, of which it shows nearly all: one
        # whose file changed without changing the page (a tag) may be purged too.
        edited = {f"/articles/{newsroom.ident(rel)}" for rel in paths}
        assert set(expected) <= set(sent), f"after {kinds[-1]} (edits: {kinds})"
        assert set(sent) - set(expected) <= edited, f"after {kinds[-1]} (edits: {kinds})"
        before = after
    assert len(set(kinds)) == 12
    assert len(walks) <= 4, f"{len(walks)} of 40 changes looked at every document"


def test_one_edit_looks_at_its_documents_only(newsroom: Newsroom, monkeypatch: pytest.MonkeyPatch) -> None:
    assert announced(newsroom) == []
    monkeypatch.setattr(inventory, "other_documents", lambda site: pytest.fail("a walk of every document"))
    rel = "klima/a01.md"
    newsroom.articles[rel]["title"] = "Berichtigt"
    newsroom.site.apply(newsroom.write(rel))
    sent = announced(newsroom)
    assert "/articles/a01" in sent and "/feeds/klima.atom" in sent and "/feeds/alle.rss" in sent
    assert not any(p.startswith("/feeds/politik") for p in sent)  # not in that feed: not looked at
