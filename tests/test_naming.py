"""naming.py: a topic or tag reaches readers under one name, however its articles spell it.

Readers group entries by category label: four spellings of one topic would show as four tags.
Read through the real app and feedparser, as readers built on it read the feeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import feedparser
import lxml.html
from click.testing import CliRunner
from lxml import etree
from test_selection import art

from feeds import create_app
from feeds.articles import Topic
from feeds.cli import cli
from feeds.config import load_config
from feeds.naming import Names, display, names

from conftest import DEMO_CONFIG, NOW, MakeSite


def article(ident: str, day: int, topics: str = "", tags: str = "") -> str:
    lines = [f"id: {ident}", f"title: Artikel {ident}", f"date: 2025-05-{day:02d}T08:00:00+02:00"]
    lines += [f"topics: {topics}"] * bool(topics) + [f"tags: {tags}"] * bool(tags)
    return "---\n" + "\n".join(lines) + f"\n---\nText von {ident}.\n"


SPELLED = {
    # "ukraine-krieg": four spellings, "Ukraine-Krieg" twice; the folder name counts only
    # where nothing else is written.
    "ukraine-krieg/a.md": article("a", 1, "[Ukraine Krieg]", "[Drohnen]"),
    "ukraine-krieg/b.md": article("b", 2, "[ukraine krieg]", "[drohnen]"),
    "ukraine-krieg/c.md": article("c", 3, "[Ukraine-Krieg]", "[Drohnen]"),
    "ukraine-krieg/d.md": article("d", 4, "[Ukraine-Krieg, science]", "[DROHNEN]"),
    "ukraine-krieg/e.md": article("e", 5),  # the folder's name: "ukraine-krieg"
    # "science" vs "Science": one each, so the tie goes to the first in code point order.
    "wissen/f.md": article("f", 6, "[Science]"),
    # "klima" has a title in the config: it wins over every spelling.
    "klima/g.md": article("g", 7, "[Klima]"),
    "klima/h.md": article("h", 8, "[KLIMA]"),
}
CONFIG = {"topics": {"klima": "Klima und Umwelt"}}
ENTRY_A = "tag:news.example.org,2025-05-01:a"


def labels(client: Any, path: str) -> dict[str, set[str]]:
    """Per entry id: the category labels a feedparser-based reader shows."""
    parsed = feedparser.parse(client.get(path).data)
    assert not parsed.bozo, parsed.bozo_exception
    return {e.id: {t.label or t.term for t in e.get("tags", [])} for e in parsed.entries}


def test_each_topic_and_tag_has_one_label_in_every_feed_and_format(make_site: MakeSite) -> None:
    client = create_app(make_site(SPELLED, CONFIG), clock=lambda: NOW).test_client()
    rss = labels(client, "/feeds/alle.rss")
    atom = labels(client, "/feeds/alle.atom")
    items = json.loads(client.get("/feeds/alle.json").data)["items"]
    as_json = {i["id"]: set(i.get("tags", [])) for i in items}
    assert rss == atom == as_json
    shown = set().union(*rss.values())
    assert {"Ukraine-Krieg", "Drohnen", "Science", "Klima und Umwelt"} <= shown
    for wrong in (
        "Ukraine Krieg",
        "ukraine krieg",
        "ukraine-krieg",
        "drohnen",
        "DROHNEN",
        "science",
        "KLIMA",
    ):
        assert wrong not in shown
    # Atom keeps the slug as the term: readers that key on it see one category too.
    root = etree.fromstring(client.get("/feeds/alle.atom").data)
    terms = {(c.get("term"), c.get("label")) for c in root.iter("{http://www.w3.org/2005/Atom}category")}
    assert ("ukraine-krieg", "Ukraine-Krieg") in terms and ("klima", "Klima und Umwelt") in terms
    # A topic's own feed shows the same labels as the combined one, and is named by them.
    topic = feedparser.parse(client.get("/feeds/ukraine-krieg.rss").data)
    assert topic.feed.title == "Testseite: Ukraine-Krieg"
    assert {t.label or t.term for e in topic.entries for t in e.tags} >= {"Ukraine-Krieg", "Drohnen"}
    assert feedparser.parse(client.get("/feeds/science.atom").data).feed.title == "Testseite: Science"


def test_pages_and_the_opml_list_use_the_same_names(make_site: MakeSite) -> None:
    client = create_app(make_site(SPELLED, CONFIG), clock=lambda: NOW).test_client()
    outlines = etree.fromstring(client.get("/feeds.opml").data).iter("outline")
    titles = {o.get("title") or o.get("text") for o in outlines}
    assert "Testseite: Ukraine-Krieg" in titles and "Testseite: Science" in titles
    page = lxml.html.fromstring(client.get("/articles/d").data).text_content()
    assert "Ukraine-Krieg" in page and "Science" in page and "ukraine krieg" not in page
    listing = lxml.html.fromstring(client.get("/feeds/alle").data).text_content()
    assert "Ukraine Krieg" not in listing and "KLIMA" not in listing


def test_a_new_spelling_that_becomes_the_most_common_renames_the_topic_everywhere(
    make_site: MakeSite,
) -> None:
    config = make_site(SPELLED, CONFIG)
    app = create_app(config, clock=lambda: NOW)
    client = app.test_client()
    before = client.get("/feeds/alle.rss")
    assert labels(client, "/feeds/alle.rss")[ENTRY_A] == {
        "Ukraine-Krieg",
        "Drohnen",
    }
    for ident, day in (("x", 20), ("y", 21)):
        path = config.parent / "articles" / "ukraine-krieg" / f"{ident}.md"
        path.write_text(article(ident, day, "[Ukraine Krieg]"), encoding="utf-8")
    app.extensions["feeds"].apply(["ukraine-krieg/x.md", "ukraine-krieg/y.md"])  # what the watcher does
    after = client.get("/feeds/alle.rss", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200  # the old bytes are no longer what the feed says
    assert labels(client, "/feeds/alle.rss")[ENTRY_A] == {
        "Ukraine Krieg",
        "Drohnen",
    }
    assert (
        feedparser.parse(client.get("/feeds/ukraine-krieg.rss").data).feed.title == "Testseite: Ukraine Krieg"
    )


def test_feeds_check_names_every_topic_spelled_several_ways(make_site: MakeSite) -> None:
    config = make_site(SPELLED, CONFIG)
    result = CliRunner().invoke(cli, ["--config", str(config), "check"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "is spelled" in line]
    ukraine = next(w for w in warnings if "'ukraine-krieg'" in w)
    # Where to look (an article that writes it another way, with its line), every spelling with
    # its count, and the name readers see.
    assert "/articles/ukraine-krieg/" in ukraine and ".md:5: warning" in ukraine
    assert "'Ukraine-Krieg' (2)" in ukraine and "'Ukraine Krieg' (1)" in ukraine
    assert ukraine.endswith("shows 'Ukraine-Krieg'")
    assert any("'klima'" in w and "'Klima und Umwelt', its title under topics:" in w for w in warnings)
    assert any("tag 'drohnen'" in w and "shows 'Drohnen'" in w for w in warnings)
    assert not any("'wissen'" in w for w in warnings)  # spelled one way only


def test_display_names_replace_the_articles_own_and_a_title_wins(make_site: MakeSite) -> None:
    site = load_config(make_site({}, CONFIG))
    shown = names(site, {"klima": "Klima", "sport": "Sport"}, {"wahl": "Wahl"})
    assert shown == Names((("klima", "Klima und Umwelt"), ("sport", "Sport")), (("wahl", "Wahl"),))
    own = art("a", topic=("KLIMA", "sport"), tag=("WAHL",))
    renamed = display(own, shown)
    assert renamed.topics == (Topic("klima", "Klima und Umwelt"), Topic("sport", "Sport"))
    assert renamed.tags == (Topic("wahl", "Wahl"),)
    assert display(renamed, shown) is renamed  # nothing to change: the same object


def test_the_demo_site_as_readers_see_it_one_label_one_icon_one_byline(tmp_path: Path) -> None:
    """Every feed of the demo in every format, read as a feedparser-based reader reads it."""
    config = tmp_path / "config.yaml"
    demo = DEMO_CONFIG.read_text(encoding="utf-8")
    config.write_text(demo.replace("articles: articles", f"articles: {DEMO_CONFIG.parent / 'articles'}"))
    client = create_app(config, clock=lambda: NOW).test_client()
    listed = [o.get("xmlUrl") for o in etree.fromstring(client.get("/feeds.opml").data).iter("outline")]
    feeds = sorted({urlsplit(u).path.rsplit(".", 1)[0] for u in listed if u})
    assert len(feeds) > 5
    icon = "https://news.example.org/static/icon.png"
    terms: dict[str, set[str]] = {}  # Atom term (the slug) -> every label readers were shown
    shown: dict[str, set[frozenset[str]]] = {}  # entry id -> its labels, per feed and format
    for feed in feeds:
        rss = feedparser.parse(client.get(f"{feed}.rss").data)
        atom = feedparser.parse(client.get(f"{feed}.atom").data)
        assert rss.feed.image.href == atom.feed.icon == icon  # the square icon, not the logo
        for entry in rss.entries + atom.entries:
            assert len(entry.authors) == 1 and entry.author  # one byline
            shown.setdefault(entry.id, set()).add(frozenset(t.label or t.term for t in entry.get("tags", [])))
        for entry in atom.entries:
            for tag in entry.get("tags", []):
                terms.setdefault(tag.term, set()).add(tag.label)
        for item in json.loads(client.get(f"{feed}.json").data)["items"]:
            shown.setdefault(item["id"], set()).add(frozenset(item.get("tags", [])))
    assert terms["ukraine-krieg"] == {"Krieg in der Ukraine"} and terms["technik"] == {"Technik"}
    assert all(len(labels) == 1 for labels in terms.values()), terms
    assert all(len(sets) == 1 for sets in shown.values()), shown  # the same in every feed and format
