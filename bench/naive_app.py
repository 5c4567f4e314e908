"""The baseline: the feed view most people write first.

Every request reads the config and every article file, parses the front matter with PyYAML,
sorts, renders the Markdown of the entries shown and builds the feed with feedgen. No index,
no cache, no ETag, no gzip. It imports nothing from ``feeds``; it exists only so the benchmark
can show what the project is measured against.

    FEEDS_CONFIG=/path/config.yaml gunicorn --workers 2 --pythonpath bench naive_app:app
"""

import os
from datetime import UTC, datetime

import markdown
import yaml
from feedgen.feed import FeedGenerator
from flask import Flask, Response, abort

app = Flask(__name__)
CONFIG_PATH = os.environ.get("FEEDS_CONFIG", "config.yaml")


def load_config():
    with open(CONFIG_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_articles(folder):
    articles = []
    for dirpath, _dirnames, filenames in os.walk(folder):
        for filename in filenames:
            if not filename.endswith((".md", ".markdown", ".txt")):
                continue
            path = os.path.join(dirpath, filename)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            meta, body = {}, text
            if text.startswith("---"):
                _, front, body = text.split("---", 2)
                meta = yaml.safe_load(front) or {}
            if meta.get("draft"):
                continue
            date = meta.get("date") or datetime.fromtimestamp(os.path.getmtime(path), UTC)
            if date.tzinfo is None:
                date = date.replace(tzinfo=UTC)
            topics = meta.get("topics") or [os.path.relpath(path, folder).split(os.sep)[0]]
            if isinstance(topics, str):
                topics = [topics]
            articles.append(
                {
                    "id": meta.get("id") or os.path.splitext(os.path.relpath(path, folder))[0],
                    "title": meta.get("title") or body.strip().splitlines()[0],
                    "date": date,
                    "topics": topics,
                    "tags": meta.get("tags") or [],
                    "summary": meta.get("summary"),
                    "body": body.strip(),
                }
            )
    return articles


def make_feed(name, fmt):
    config = load_config()
    site = config["site"]
    defaults = config.get("defaults", {})
    folder = os.path.join(os.path.dirname(os.path.abspath(CONFIG_PATH)), config.get("articles", "articles"))
    articles = load_articles(folder)

    spec = (config.get("feeds") or {}).get(name)
    if spec is None:  # a topic feed
        spec = {"title": name, "topics": [name]}
        if not any(name in a["topics"] for a in articles):
            abort(404)
    if spec.get("topics"):
        articles = [a for a in articles if set(a["topics"]) & set(spec["topics"])]
    articles.sort(key=lambda a: a["date"], reverse=True)
    articles = articles[: spec.get("limit", defaults.get("limit", 50))]
    full = spec.get("content", defaults.get("content", "full")) == "full"

    fg = FeedGenerator()
    fg.id(f"{site['url']}/feeds/{name}.{fmt}")
    fg.title(spec.get("title", name))
    fg.link(href=site["url"], rel="alternate")
    fg.link(href=f"{site['url']}/feeds/{name}.{fmt}", rel="self")
    fg.description(spec.get("description") or spec.get("title", name))
    fg.language(site.get("language", "en"))
    for a in articles:
        url = f"{site['url']}/articles/{a['id']}"
        fe = fg.add_entry(order="append")
        fe.id(url)
        fe.title(a["title"])
        fe.link(href=url)
        fe.published(a["date"])
        fe.updated(a["date"])
        summary = a["summary"] or a["body"][:300].rsplit(" ", 1)[0] + " …"
        fe.description(summary)
        if full:
            fe.content(markdown.markdown(a["body"], extensions=["tables"]), type="CDATA")
        for term in a["topics"] + a["tags"]:
            fe.category(term=str(term))
    return fg.rss_str(pretty=True) if fmt == "rss" else fg.atom_str(pretty=True)


@app.route("/feeds/<name>.rss")
def rss(name):
    return Response(make_feed(name, "rss"), mimetype="application/rss+xml")


@app.route("/feeds/<name>.atom")
def atom(name):
    return Response(make_feed(name, "atom"), mimetype="application/atom+xml")


@app.route("/healthz")
def healthz():
    return {"status": "ok"}
