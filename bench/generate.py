"""Generate a synthetic archive: N articles over T topics, Markdown and plain export forms.

Deterministic for a given seed, so two runs benchmark the same bytes.
usage: python bench/generate.py OUT_DIR --articles 100000 [--topics 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

WORDS = (
    "Regierung Bericht Stadt Klima Energie Verkehr Schule Forschung Markt Preis Wahl "
    "Gericht Polizei Hafen Bahn Netz Wasser Wald Haushalt Gemeinde Minister Studie "
    "Verband Unternehmen Region Zukunft Sicherheit Gesundheit Kultur Sport"
).split()
CONFIG = """site:
  title: Benchmark-Nachrichten
  url: https://bench.example.org
  description: Synthetic archive for benchmarks
  language: de
  timezone: Europe/Berlin
  author: Redaktion
articles: articles
defaults:
  limit: 50
  max_age: 300
  content: full
topic_feeds: true
feeds:
  alle:
    title: Alle Meldungen
  kurz:
    title: Schlagzeilen
    content: summary
"""


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def article(
    rng: random.Random, i: int, topics: list[str], start: datetime, step: int = 17
) -> tuple[str, str]:
    when = start + timedelta(minutes=step * i + rng.randrange(10))
    topic = topics[i % len(topics)]
    title = sentence(rng, 7)[:-1]
    paragraphs = [" ".join(sentence(rng, rng.randrange(8, 20)) for _ in range(4)) for _ in range(5)]
    front = (
        f"---\nid: a{i:06d}\ntitle: {title}\ndate: {when.isoformat()}\n"
        f"topics: [{topic}]\ntags: [{rng.choice(WORDS).lower()}]\n---\n"
    )
    if i % 3 == 0:
        body = "\n".join(
            [paragraphs[0], "Hintergrund", *paragraphs[1:], "Details | |", "---|---|", "Quellen |"]
        )
        return f"{topic}/{when:%Y}/a{i:06d}.txt", front + body + "\n"
    body = (
        f"{paragraphs[0]}\n\n## Hintergrund\n\n"
        + "\n\n".join(paragraphs[1:])
        + f"\n\n[Mehr](/archiv/{i}) und *Kontext*.\n"
    )
    return f"{topic}/{when:%Y}/a{i:06d}.md", front + body


def generate(out: Path, count: int, topics: int = 200, seed: int = 1) -> Path:
    rng = random.Random(seed)
    names = [f"thema-{t:03d}" for t in range(topics)]
    start = datetime(2015, 1, 1, tzinfo=UTC)
    (out / "articles").mkdir(parents=True, exist_ok=True)
    step = min(17, 5_000_000 // max(count, 1))  # a million articles still end before today
    for i in range(count):
        rel, text = article(rng, i, names, start, step)
        path = out / "articles" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (out / "config.yaml").write_text(CONFIG, encoding="utf-8")
    return out / "config.yaml"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--topics", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(generate(args.out, args.articles, args.topics, args.seed))
