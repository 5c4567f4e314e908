"""/metrics: what an operator's Prometheus sees, after requests, renders and reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from feeds import create_app
from feeds.config import load_config
from feeds.errors import ConfigError
from feeds.site import Site

from conftest import NOW, MakeSite, StartServer


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


def test_metrics_answer_only_to_allowed_addresses(make_site: MakeSite) -> None:
    """Counts per feed say who reads what: they are the operator's, not the public's."""
    client = create_app(make_site(), clock=lambda: NOW, watch=False).test_client()
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    for outside in ("203.0.113.9", "2001:db8::1", "::ffff:203.0.113.9", "", "unix:/x"):
        refused = client.get("/metrics", environ_base={"REMOTE_ADDR": outside})
        assert refused.status_code == 404 and b"feeds_" not in refused.data, outside
    # A forwarded header names whoever the client likes: never trusted for this.
    forged = client.get(
        "/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}, headers={"X-Forwarded-For": "127.0.0.1"}
    )
    assert forged.status_code == 404
    for inside in ("::1", "::ffff:127.0.0.1", "127.8.9.10"):
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": inside}).status_code == 200, inside


def test_metrics_allow_names_the_monitoring_networks(make_site: MakeSite) -> None:
    config = make_site(config={"metrics": {"allow": ["10.1.0.0/16", "2001:db8::5"]}})
    client = create_app(config, clock=lambda: NOW, watch=False).test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.200.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "2001:db8::5"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.2.0.1"}).status_code == 404
    assert client.get("/metrics").status_code == 404  # loopback no longer, since not listed


def test_a_bad_metrics_allow_entry_is_reported_with_its_line(make_site: MakeSite) -> None:
    config = make_site(
        raw_config="""\
        site:
          title: T
          url: https://news.example.org
        metrics:
          allow: [127.0.0.1, monitoring.example.org]
        """
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert [
        (p.line, "metrics.allow" in p.message, "10.0.0.0/8" in p.message) for p in caught.value.problems
    ] == [(5, True, True)]


def test_metrics_refused_by_a_real_server_to_an_address_not_allowed(
    make_site: MakeSite, start_server: StartServer
) -> None:
    allowed = start_server(make_site(name="a"), "allowed")
    assert allowed.fetch("/metrics").status == 200
    elsewhere = start_server(make_site(config={"metrics": {"allow": ["10.0.0.0/8"]}}, name="b"), "elsewhere")
    reply = elsewhere.fetch("/metrics")
    assert reply.status == 404 and b"feeds_" not in reply.body
