"""/metrics: what an operator's Prometheus sees, after requests, renders and reloads."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from feeds import create_app
from feeds.site import Site

from conftest import NOW, MakeSite


def sample(client: FlaskClient, name: str, **labels: str) -> float:
    """The value of one sample in the exposition (0 when absent)."""
    text = client.get("/metrics").get_data(as_text=True)
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


def test_requests_renders_and_not_modified_ratio(make_site: MakeSite) -> None:
    client = create_app(make_site(), clock=lambda: NOW, watch=False).test_client()
    first = client.get("/feeds/alle.rss")
    client.get("/feeds/alle.rss", headers={"If-None-Match": first.headers["ETag"]})
    client.get("/feeds/alle.rss", headers={"If-None-Match": first.headers["ETag"]})
    assert sample(client, "feeds_requests_total", kind="feed", feed="alle.rss", status="200") == 1
    assert sample(client, "feeds_requests_total", kind="feed", feed="alle.rss", status="304") == 2
    assert abs(sample(client, "feeds_not_modified_ratio") - 2 / 3) < 1e-9
    assert sample(client, "feeds_render_seconds_count", kind="feed") == 1  # rendered once, served thrice
    assert sample(client, "feeds_articles_loaded") == 5


def test_reloads_and_a_broken_config_are_counted(make_site: MakeSite) -> None:
    path: Path = make_site()
    app = create_app(path, clock=lambda: NOW, watch=False)
    client, site = app.test_client(), app.extensions["feeds"]
    assert isinstance(site, Site)
    good = path.read_text(encoding="utf-8")
    path.write_text(good.replace("Testseite", "Neuer Titel"), encoding="utf-8")
    assert site.apply(config_changed=True)
    assert sample(client, "feeds_reloads_total") == 1
    path.write_text(good + "\nunbekannt: 1\n", encoding="utf-8")
    assert not site.apply(config_changed=True)
    assert sample(client, "feeds_reload_errors_total") == 1
    assert sample(client, "feeds_config_degraded") == 1
    path.write_text(good, encoding="utf-8")
    assert site.apply(config_changed=True)
    assert sample(client, "feeds_config_degraded") == 0
    assert sample(client, "feeds_reloads_total") == 2


def request_series(client: FlaskClient) -> set[str]:
    """The label sets of feeds_requests_total in the exposition."""
    text = client.get("/metrics").get_data(as_text=True)
    return {line.rpartition(" ")[0] for line in text.splitlines() if line.startswith("feeds_requests_total{")}


def test_bad_paths_add_no_series(make_site: MakeSite) -> None:
    """Every label value is a known document: however many odd paths are asked for, Prometheus
    is not handed a new series (and "alle.rss\\n" is not a feed)."""
    client = create_app(make_site(), clock=lambda: NOW, watch=False).test_client()
    for path in ("/feeds/alle.rss", "/feeds/alle", "/feeds/kurz/archive/1.rss", "/"):
        assert client.get(path).status_code == 200
    before = request_series(client)
    bad = [
        f"/feeds/{name}{suffix}"
        for name in ("alle.rss", "kurz.atom", "alle", "kurz/archive/1.rss")
        for suffix in ("%0a", "%0a%0a", "%0d", "/", "%20")
    ]
    bad += [f"/feeds/nope{i}.rss" for i in range(100)] + [f"/feeds/nope{i}" for i in range(100)]
    bad += [f"/feeds/alle/archive/{i}.rss" for i in range(2, 100)]
    for path in bad:
        assert client.get(path).status_code == 404, path
        assert client.post(path).status_code == 404, path
    assert request_series(client) == before
