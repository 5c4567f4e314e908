"""A seeded generator of a hostile article corpus: everything a newsroom export can throw at us.

``generate(root, seed)`` writes ``root/config.yaml`` and ``root/articles/`` and returns a
:class:`Corpus` describing what readers must (not) see. The same seed gives the same bytes, so a
failure found once is found again. Fixed cases cover each hazard on its own (control characters,
``]]>``, scripts and event handlers, ``javascript:`` URLs, emoji, right-to-left text, a
10,000-character title, an empty feed, no date, no topics, duplicate ids, CRLF/BOM, bad UTF-8,
German umlauts, relative URLs, files that cannot be articles); seeded ones mix them.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import yaml

SEED = 20250428
SITE_URL = "https://news.example.org/"
DRAFT_MARKER = "DRAFT-SECRET"
EMBARGO_MARKER = "EMBARGO-SECRET"
IGNORED_MARKER = "IGNORED-SECRET"
EMPTY_FEED = "leer"
NO_DATE_MTIME = 1_735_689_600  # 2025-01-01T00:00:00Z: the no-date article's file time, pinned

# XML 1.0 forbids C0 controls except tab/LF/CR, and U+FFFE/U+FFFF; C1 controls are legal but
# hostile. All of them turn up in copy-pasted agency text.
CONTROL = "\x01\x02\x07\x08\x0b\x0c\x0e\x1b\x1f\x7f\x80\x85\x9f\ufffe\uffff"
SCRIPTS = [
    '<script>alert("x")</script>',
    '<img src="x.png" onerror="alert(1)">',
    '<a href="javascript:alert(1)">klick</a>',
    "[klick](javascript:alert(2))",
    '<a href=" JaVaScRiPt:alert(3)">gemischt</a>',
    '<iframe src="https://evil.example/"></iframe>',
    '<svg onload="alert(4)"><circle r="1"/></svg>',
    "<style>body{display:none}</style>",
    '<div style="background:url(javascript:alert(5))" onclick="x()">div</div>',
    '<form action="/steal"><input name="a"></form>',
    '<object data="x.swf"></object>',
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<a href="data:text/html,&lt;script&gt;alert(6)&lt;/script&gt;">data</a>',
    '<a href="vbscript:msgbox(7)">vb</a>',
    '<p onmouseover="alert(8)">hover</p>',
]
EMOJI = ["🦊", "👩‍👩‍👧‍👦", "🇩🇪", "🏳️‍🌈", "😀", "𝕳𝖊𝖑𝖑𝖔", "🤷🏽‍♀️", "\U0001fae0"]
RTL = ["مرحبا بالعالم", "שלום עולם", "\u202eRTL-override\u202c", "\u200fעברית\u200e", "كييف"]
UMLAUTS = ["Größenwahn", "Übersee", "Ärger über Öl", "Straße", "Maß", "Fußgänger", "ÄÖÜäöüß"]
RELATIVE = [
    "[Archiv](/archiv/1)",
    "![Bild](bilder/a.png)",
    "[hoch](../oben)",
    '<a href="?q=1&amp;r=2">query</a>',
    '<a href="#anker">anker</a>',
    "[protokollrelativ](//cdn.example.net/x)",
    '<img src="img.png" alt="i">',
    "<https://example.org/auto>",
]
MARKUP = [
    "&amp; & &lt; < > \"quotes\" 'apos'",
    "`]]>` im Code",
    "```\n]]><![CDATA[ nested ]]>\n```",
    "<!-- Kommentar ]]> -->",
    "<![CDATA[ cdata ]]>",
    "| a | b |\n|---|---|\n| ]]> | <x> |",
    "> Zitat ]]>",
    "*ungeschlossen **fett",
    "&#0; &#x1; &#xFFFE; &#55296; &bogus;",
    "\u00a0\u2028\u2029\u200b\ufeff",
]
TOPIC_POOL = [
    "Übersee",
    "Straße",
    "ukraine krieg",
    "Ukraine-Krieg",
    "🦊",
    "أخبار",
    "עברית",
    "C++ & <Co>",
    "]]>",
    "Ärger über Öl",
    "a" * 120,
]


@dataclass(frozen=True)
class Corpus:
    config: Path
    articles: Path
    secrets: tuple[str, ...]  # text that must appear in no document
    hidden_ids: tuple[str, ...]  # ids of drafts and embargoed articles: no page
    empty_feeds: tuple[str, ...]  # operator feeds whose topics match nothing
    site_url: str = SITE_URL


def _front(meta: dict) -> str:
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=10**6) + "---\n"


def _date(rng: random.Random) -> str:
    """A random moment in 2024-2025, in one of the forms articles use."""
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    year = rng.choice([2024, 2025])
    hour, minute = rng.randint(0, 23), rng.randint(0, 59)
    form = rng.randrange(4)
    if form == 0:
        return f"{year}-{month:02d}-{day:02d}"
    if form == 1:
        return f"{year}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00"
    zone = rng.choice(["+00:00", "+02:00", "-05:00", "+05:45", "Z"])
    return f"{year}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00{zone}"


def _pick(rng: random.Random, pool: list[str], k: int) -> list[str]:
    return [rng.choice(pool) for _ in range(k)]


def _fixed_articles(rng: random.Random) -> dict[str, bytes]:
    files: dict[str, str | bytes] = {}
    files["kontrolle/steuerzeichen.md"] = (
        "---\n"
        f"title: Steuer{CONTROL.replace(chr(0x85), '')}zeichen im Titel\n"
        f'summary: "Zusammen\\x01fassung\\x0b mit \\x1b Escapes \\uFFFE"\n'
        "date: 2025-03-01T10:00:00+01:00\n"
        'tags: ["tag\\x07", "\\x0c"]\n'
        'author: {name: "Na\\x08me", email: "a\\x01b@example.org"}\n'
        "---\n"
        f"Text mit {CONTROL} Steuerzeichen.\n\n" + "".join(f"Zeichen {c} hier.\n\n" for c in CONTROL)
    )
    files["cdata/ende.md"] = (
        _front(
            {
                "id": "cdata-ende",
                "title": "Ende ]]> des CDATA <![CDATA[",
                "date": "2025-03-02T10:00:00+01:00",
                "summary": "Zusammenfassung ]]> mit <![CDATA[ drin",
                "topics": ["]]>", "CDATA"],
                "tags": ["]]>"],
                "author": "Autor ]]>",
                "sources": ["Quelle ]]>"],
            }
        )
        + "\n\n".join(MARKUP)
        + "\n"
    )
    files["xss/skripte.md"] = (
        _front(
            {
                "id": "xss-skripte",
                "title": '<script>alert("titel")</script> & <b onclick="x()">fett</b>',
                "date": "2025-03-03T10:00:00+01:00",
                "summary": '<img src=x onerror="alert(1)"> Zusammenfassung',
                "author": {
                    "name": "<script>alert(1)</script>",
                    "email": "x@example.org",
                    "uri": "javascript:alert(1)",
                },
                "image": "javascript:alert(1)",
                "link": "javascript:alert(2)",
                "topics": ["<script>"],
            }
        )
        + "\n\n".join(SCRIPTS)
        + "\n"
    )
    files["emoji/tiere.md"] = (
        _front(
            {
                "id": "emoji-😀",
                "title": " ".join(EMOJI) + " Emoji-Titel",
                "date": "2025-03-04T10:00:00+01:00",
                "topics": ["🦊", "🇩🇪 Deutschland"],
                "tags": EMOJI[:3],
                "author": "🦊 Fuchs",
                "summary": "Emoji " + "".join(EMOJI),
            }
        )
        + "# "
        + "".join(EMOJI)
        + "\n\n"
        + " ".join(EMOJI * 3)
        + "\n"
    )
    files["rtl/arabisch.md"] = (
        _front(
            {
                "title": RTL[0] + " " + RTL[2],
                "date": "2025-03-05T10:00:00+03:00",
                "language": "ar",
                "topics": ["أخبار"],
                "author": "كاتب",
            }
        )
        + "\n\n".join(RTL)
        + "\n"
    )
    files["rtl/hebraeisch.txt"] = "\n".join([RTL[1] + " כותרת", *RTL, "עוד פסקה."]) + "\n"
    words = ["Überlänge", "Titel", "mit", "sehr", "vielen", "Wörtern", "ÄÖÜ", "🦊", "]]>", "<b>"]
    long_title = ""
    while len(long_title) < 10_000:
        long_title += rng.choice(words) + " "
    files["lang/titel.md"] = (
        _front(
            {
                "id": "langer-titel",
                "title": long_title[:10_000],
                "date": "2025-03-06T10:00:00+01:00",
                "summary": long_title[:5000],
            }
        )
        + (long_title + "\n\n") * 3
    )
    files["ohne-datum.md"] = "# Ohne Datum und ohne Thema\n\nDieser Artikel hat weder Datum noch Thema.\n"
    files["ohne-thema.md"] = _front({"title": "Ohne Thema", "date": "2025-03-07T10:00:00+01:00"}) + "Text.\n"
    files["doppelt/a.md"] = (
        _front({"id": "doppelt", "title": "Doppelte ID (erste)", "date": "2025-03-08T10:00:00+01:00"})
        + "Erste.\n"
    )
    files["doppelt/b.md"] = (
        _front({"id": "doppelt", "title": "Doppelte ID (zweite)", "date": "2025-03-09T10:00:00+01:00"})
        + "Zweite.\n"
    )
    files["crlf/bom.md"] = (
        (
            "\ufeff"
            + _front(
                {
                    "title": "BOM und CRLF",
                    "date": "2025-03-10T10:00:00+01:00",
                    "topics": ["Zeilenenden"],
                }
            )
            + "Absatz eins.\n\nAbsatz zwei mit [Link](/relativ).\n"
        )
        .replace("\n", "\r\n")
        .encode("utf-8")
    )
    files["crlf/export.txt"] = (
        "\ufeffExport mit CRLF und BOM\r\nErster Absatz.\r\nZwischentitel\r\n"
        "Zweiter Absatz.\rAlter Mac-Zeilenumbruch.\r\nDetails | |\r\n---|---|\r\n"
        "Quellen | Agentur\r\n"
    ).encode("utf-8")
    files["kaputt/utf8.md"] = (
        b"---\ntitle: Kaputtes \xff\xfe UTF-8 \xc3\x28\ndate: 2025-03-11T10:00:00+01:00\n---\n"
        b"Overlong \xc0\xaf, lone continuation \x80, truncated \xe2\x82, surrogate \xed\xa0\x80, "
        b"Latin-1 Gr\xf6\xdfe.\n"
    )
    files["kaputt/latin1.txt"] = "Latin-1 statt UTF-8: Größe\nÄrger über Öl.\n".encode("latin-1")
    files["umlaute/größe.md"] = (
        _front(
            {
                "title": "Größenwahn: Ärger über Öl in der Straße",
                "date": "2025-03-12T10:00:00+01:00",
                "topics": ["Übersee", "Straße", "ÄRGER über öl"],
                "tags": ["Maß", "Fußgänger"],
                "author": {"name": "Jürgen Weiß", "email": "juergen.weiss@example.org"},
            }
        )
        + "Über die Größe der Maßnahmen für Fußgänger wird gestritten. Öl, Äpfel, Übermut.\n"
    )
    files["umlaute/übersee.txt"] = "Übersee-Nachrichten für Ärzte\nÖffentliche Äußerungen über Straßen.\n"
    files["relativ/links.md"] = (
        _front(
            {
                "title": "Relative Links",
                "date": "2025-03-13T10:00:00+01:00",
                "image": "bilder/ein bild.jpg",
            }
        )
        + "\n\n".join(RELATIVE)
        + "\n"
    )
    files["relativ/bild-url.md"] = (
        _front(
            {
                "title": "Bild mit absoluter URL",
                "date": "2025-03-14T10:00:00+01:00",
                "image": "https://cdn.example.net/bild.png?x=1&y=2",
                "link": "https://example.org/a?b=1&c=2#x",
            }
        )
        + "Text.\n"
    )
    files["zeit/gleich-a.md"] = (
        _front({"id": "gleich-a", "title": "Gleiche Zeit A", "date": "2025-03-15T10:00:00+01:00"}) + "A.\n"
    )
    files["zeit/gleich-b.md"] = (
        _front({"id": "gleich-b", "title": "Gleiche Zeit B", "date": "2025-03-15T09:00:00Z"}) + "B.\n"
    )
    files["zeit/rueckwaerts.md"] = (
        _front(
            {
                "title": "Updated vor Date",
                "date": "2025-03-16T10:00:00+01:00",
                "updated": "2024-01-01T00:00:00Z",
            }
        )
        + "Text.\n"
    )
    files["zeit/unlesbar.md"] = (
        "---\ntitle: Unlesbares Datum\ndate: gestern\nupdated: 31.12.2025\n---\nText.\n"
    )
    files["autoren/viele.md"] = (
        _front(
            {
                "title": "Viele Autoren",
                "date": "2025-03-17T10:00:00+01:00",
                "author": [
                    "Eins",
                    {"name": "Zwei ]]>", "email": "zwei@example.org", "uri": "https://example.org/zwei"},
                    {"name": "Drei", "email": "kein-at", "uri": "ftp://example.org"},
                    {"name": "Vier <x>"},
                    {"name": "Fünf", "email": "fuenf@example.org", "uri": "https://example.org/ein autor"},
                    {"name": "Sechs", "email": "<sechs@example.org>", "uri": "/autoren/sechs"},
                ],
            }
        )
        + "Text.\n"
    )
    files["typen/falsch.md"] = (
        "---\ntitle: 12345\ndate: 2025-03-18\ntopics: {a: b}\ntags: 7\nauthor: [1, 2]\nsummary: [x]\n"
        "language: 'de DE'\nid: 'a b?c#d%e/../f'\nimage: 42\nlink: /relativ\n"
        "unbekannt: x\n---\nText mit falschen Typen.\n"
    )
    files["nur-titel.md"] = "# Nur ein Titel\n"
    # Files that cannot be articles: left out, never breaking a feed.
    files["unbrauchbar/leer.md"] = ""
    files["unbrauchbar/leerzeichen.md"] = " \n\t\r\n"
    files["unbrauchbar/binaer.md"] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    files["unbrauchbar/yaml.md"] = "---\ntitle: [kaputt\ndate: 2025-01-01\n---\nText.\n"
    files["unbrauchbar/offen.md"] = "---\ntitle: Nie geschlossen\n\nText.\n"
    files["unbrauchbar/liste.md"] = "---\n- a\n- b\n---\nText.\n"
    # Never published: drafts, embargoes, ignored names.
    files["geheim/entwurf.md"] = (
        _front(
            {
                "id": "entwurf-geheim",
                "title": f"{DRAFT_MARKER} Entwurf",
                "date": "2025-02-01T10:00:00+01:00",
                "draft": True,
                "topics": [f"{DRAFT_MARKER}-Thema"],
                "summary": DRAFT_MARKER,
            }
        )
        + f"{DRAFT_MARKER}\n"
    )
    files["geheim/sperrfrist.md"] = (
        _front(
            {
                "id": "sperrfrist-geheim",
                "title": f"{EMBARGO_MARKER} Sperrfrist",
                "date": "2031-01-01T06:00:00+01:00",
                "topics": [f"{EMBARGO_MARKER}-Thema"],
                "tags": [EMBARGO_MARKER],
                "summary": EMBARGO_MARKER,
            }
        )
        + f"{EMBARGO_MARKER}\n"
    )
    files["geheim/draft-ja.md"] = (
        f"---\ntitle: {DRAFT_MARKER} yes\ndate: 2025-02-02\ndraft: yes\n---\n{DRAFT_MARKER}\n"
    )
    files["_intern/notiz.md"] = f"# {IGNORED_MARKER}\n\n{IGNORED_MARKER}\n"
    files[".versteckt.md"] = f"# {IGNORED_MARKER}\n\n{IGNORED_MARKER}\n"
    files["sichtbar/.versteckt/x.md"] = f"# {IGNORED_MARKER}\n\n{IGNORED_MARKER}\n"
    return {k: v if isinstance(v, bytes) else v.encode("utf-8") for k, v in files.items()}


def _random_article(rng: random.Random, n: int) -> tuple[str, bytes]:
    pools = [SCRIPTS, EMOJI, RTL, UMLAUTS, RELATIVE, MARKUP, list(CONTROL), ["]]>"]]

    def mix(k: int) -> str:
        return " ".join(rng.choice(rng.choice(pools)) for _ in range(k))

    meta: dict = {"title": mix(rng.randint(1, 4)) + f" #{n}", "date": _date(rng)}
    if rng.random() < 0.5:
        meta["updated"] = _date(rng)
    if rng.random() < 0.7:
        meta["topics"] = _pick(rng, TOPIC_POOL, rng.randint(1, 3))
    if rng.random() < 0.5:
        meta["tags"] = _pick(rng, TOPIC_POOL + UMLAUTS, rng.randint(1, 3))
    if rng.random() < 0.5:
        meta["summary"] = mix(rng.randint(1, 5))
    if rng.random() < 0.3:
        meta["author"] = rng.choice([mix(2), {"name": mix(1), "email": f"r{n}@example.org"}])
    if rng.random() < 0.3:
        meta["id"] = f"zufall-{n}-" + rng.choice(UMLAUTS + EMOJI)
    body = "\n\n".join(mix(rng.randint(1, 6)) for _ in range(rng.randint(1, 6))) + "\n"
    suffix = rng.choice([".md", ".md", ".markdown", ".txt"])
    folder = rng.choice(["gemischt", "Übersee", "🦊", "ohne"])
    text = _front(meta) + body
    if rng.random() < 0.3:
        text = "\ufeff" + text
    if rng.random() < 0.3:
        text = text.replace("\n", "\r\n")
    path = f"{n:02d}.{suffix.lstrip('.')}" if folder == "ohne" else f"{folder}/{n:02d}{suffix}"
    return path, text.encode("utf-8")


CONFIG = {
    "site": {
        "title": "Feindliche <Testseite> & ]]> 🦊",
        "url": SITE_URL,
        "description": "Ärger über Öl, " + RTL[0] + ", <script>alert(1)</script> ]]>",
        "language": "de",
        "timezone": "Europe/Berlin",
        "author": "Redaktion <Ärger> & Co",
    },
    "articles": "articles",
    "defaults": {"limit": 200, "max_age": 300, "content": "full"},
    "topic_feeds": True,
    "feeds": {
        "alle": {"title": "Alle ]]> <Meldungen> & 🦊", "description": "Alles"},
        EMPTY_FEED: {"title": "Leer", "description": "Thema ohne Artikel", "topics": ["gibt-es-nicht"]},
        "kurz": {"title": "Kurz", "content": "summary", "limit": 3, "max_age": 600},
        "uebersee": {"title": "Übersee", "topics": ["Übersee"], "exclude_topics": ["🦊"]},
        "arabisch": {"title": RTL[0], "topics": ["أخبار"], "language": "ar"},
        "tags": {"title": "Nach Tags", "tags": ["Maß", "]]>"]},
    },
}


def generate(root: Path, seed: int = SEED, random_articles: int = 24) -> Corpus:
    """Write the corpus under ``root`` (config.yaml + articles/); same seed, same bytes."""
    rng = random.Random(seed)
    folder = root / "articles"
    files = _fixed_articles(rng)
    for n in range(random_articles):
        path, data = _random_article(rng, n)
        files[path] = data
    for rel, data in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.utime(target, (NO_DATE_MTIME, NO_DATE_MTIME))
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return Corpus(
        config=config,
        articles=folder,
        secrets=(DRAFT_MARKER, EMBARGO_MARKER, IGNORED_MARKER),
        hidden_ids=("entwurf-geheim", "sperrfrist-geheim", "geheim/draft-ja"),
        empty_feeds=(EMPTY_FEED,),
    )
