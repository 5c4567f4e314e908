"""Varnish (deploy/varnish.vcl) and nginx (deploy/nginx-cache.conf) in front of real origins.

Each Varnish test starts the production server (granian, ``harness.production_command``) twice,
as two origins with state folders of their own over one site in tmp_path, and varnishd in front
of them with the shipped VCL, only the backend ports (and, for one test, the purge ACL)
replaced::

    varnishd -j none -F -a 127.0.0.1:<port> -f <tmp>/varnish.vcl -n <tmp>/varnish -s malloc,64m

The origins log every request (``FEEDS_ACCESS_LOG=1``), so a test counts what reached them;
Varnish marks its answers ``X-Cache: HIT``, ``STALE`` or ``MISS``. varnishd and nginx come from
Debian (scripts/install-system-packages.sh): where they are missing the tests skip, and under
CI=true they fail.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from lxml import etree

from conftest import REPO, MakeSite
from support import harness
from support.waiting import PATIENCE

VCL = REPO / "deploy" / "varnish.vcl"
NGINX_CONF = REPO / "deploy" / "nginx-cache.conf"
SHIPPED_PORTS = ("8000", "8001")  # the origins the shipped files name
STARTUP = 2 * PATIENCE  # seconds for varnishd (it compiles the VCL first) or an origin to come up
GZIP = {"Accept-Encoding": "gzip"}
ATOM = "http://www.w3.org/2005/Atom"
FIRST_TITLE = "Erster Artikel"
NEW_TITLE = "Neu betitelter Artikel"
_ACCESS = re.compile(r'feeds\.access: \S+ "(?P<method>\S+) (?P<path>\S*)" (?P<status>\d+)')
T = TypeVar("T")


def program(name: str) -> str:
    """The path of a Debian-packaged program; skip (fail under CI=true) when it is missing."""
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI (CI=true): bash scripts/install-system-packages.sh")
        pytest.skip(f"needs {name}: bash scripts/install-system-packages.sh installs it")
    return found


def replace_once(text: str, old: str, new: str, where: Path) -> str:
    assert text.count(old) == 1, f"{where.name}: expected {old!r} exactly once"
    return text.replace(old, new)


def render_vcl(ports: Sequence[int], purgers: Sequence[str] | None = None) -> str:
    """The shipped VCL with its two origins on ``ports``, and another purge ACL if given."""
    text = VCL.read_text(encoding="utf-8")
    for shipped, port in zip(SHIPPED_PORTS, ports, strict=True):
        text = replace_once(text, f'.port = "{shipped}";', f'.port = "{port}";', VCL)
    if purgers is not None:
        acl = re.search(r"^acl purgers \{\n.*?^\}", text, re.MULTILINE | re.DOTALL)
        assert acl, f"{VCL.name}: no 'acl purgers' block"
        entries = "".join(f'\t"{address}";\n' for address in purgers)
        text = text.replace(acl.group(0), "acl purgers {\n" + entries + "}")
    return text


def stop_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL what is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


@dataclass
class Proxy:
    """A cache (varnishd or nginx) started by a test, in its own process group."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log: Path

    def fetch(self, path: str, headers: harness.Headers = None, **options: Any) -> harness.Reply:
        """:func:`harness.fetch` from this cache (``method``, ``timeout``, ``source``)."""
        return harness.fetch(self.port, path, headers, **options)

    def counter(self, name: str) -> int:
        """A varnishstat counter (``MAIN.n_obj_purged``)."""
        run = subprocess.run(
            [program("varnishstat"), "-n", str(self.workdir), "-1", "-f", name],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return int(run.stdout.split()[1])

    def wait_ready(self) -> None:
        def answers() -> bool | None:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                self.fetch("/healthz", timeout=5.0)
            except OSError:
                return None
            return True

        wait_for(answers, STARTUP, f"{self.log.name}: answering on port {self.port}")


@dataclass
class Stack:
    """Starts origins and caches over one site; everything stops when the test ends."""

    tmp: Path
    started: list[harness.Server | Proxy]

    def origins(self, config: Path, count: int = 2) -> list[harness.Server]:
        """``count`` production servers over ``config``, each with its own state folder."""
        servers = [
            harness.start(
                lambda port: harness.production_command(port, 1),
                self.tmp / f"origin{i}.log",
                config=config,
                state_dir=self.tmp / f"origin{i}-state",
                env={"FEEDS_ACCESS_LOG": "1"},
                ready=None,
            )
            for i in range(1, count + 1)
        ]
        self.started += servers
        for server in servers:  # they load the site side by side
            harness.wait_ready(server, timeout=STARTUP)
        return servers

    def varnish(
        self, origins: Sequence[harness.Server], port: int | None = None, purgers: Sequence[str] | None = None
    ) -> Proxy:
        """varnishd with the shipped VCL in front of two origins (one named twice if one)."""
        varnishd = program("varnishd")
        ports = [server.port for server in origins]
        name = f"varnish{sum(isinstance(s, Proxy) for s in self.started) + 1}"
        vcl = self.tmp / f"{name}.vcl"
        vcl.write_text(render_vcl((ports * 2)[:2], purgers), encoding="utf-8")
        port = port or harness.free_port()
        log = self.tmp / f"{name}.log"
        workdir = self.tmp / name
        command = [
            *(varnishd, "-j", "none", "-F", "-a", f"{harness.HOST}:{port}", "-f", str(vcl)),
            *("-n", str(workdir), "-s", "malloc,64m"),
            # No grace beyond what the origin's stale-* directives give (default: 10 s), so
            # that a test sees the VCL's handling of them and nothing else.
            *("-p", "default_grace=0"),
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proxy = Proxy(process, port, workdir, log)
        self.started.append(proxy)
        proxy.wait_ready()
        return proxy


def stop(what: harness.Server | Proxy) -> None:
    if isinstance(what, Proxy):
        stop_group(what.process)
    else:
        harness.stop(what)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    started: list[harness.Server | Proxy] = []
    yield Stack(tmp_path, started)
    for what in reversed(started):  # the caches first
        stop(what)


def origin_requests(origins: Sequence[harness.Server]) -> list[str]:
    """Paths of the document requests the origins answered so far (health probes left out)."""
    paths = []
    for server in origins:
        for match in _ACCESS.finditer(server.log.read_text(errors="replace")):
            if match["path"] != "/healthz":
                paths.append(match["path"])
    return paths


def text_of(reply: harness.Reply) -> str:
    body = gzip.decompress(reply.body) if reply.headers.get("content-encoding") == "gzip" else reply.body
    return body.decode("utf-8")


def edit_title(config: Path, title: str) -> None:
    """Give the article ``erster`` a new title, saved the way an editor saves (rename into place)."""
    path = config.parent / "articles" / "politik" / "erster.md"
    text = path.read_text(encoding="utf-8")
    fresh = path.with_name(".erster.md.tmp")
    fresh.write_text(re.sub(r"(?m)^title: .*$", f"title: {title}", text), encoding="utf-8")
    fresh.replace(path)


def archive_path(origin: harness.Server, feed: str) -> str:
    """The newest RFC 5005 archive page of ``feed``, found through its prev-archive link."""
    root = etree.fromstring(origin.fetch(f"/feeds/{feed}.atom").body)
    hrefs = root.xpath("/atom:feed/atom:link[@rel='prev-archive']/@href", namespaces={"atom": ATOM})
    assert hrefs, f"/feeds/{feed}.atom has no prev-archive link"
    return str(urlsplit(hrefs[0]).path)


# -- the shipped files -------------------------------------------------------------------------


def test_shipped_vcl_compiles(tmp_path: Path) -> None:
    # Started as root, varnishd reads -f as its unprivileged user, who cannot read a checkout
    # under /root or in a 0700 folder, nor tmp_path: a copy with no jail, as the tests that run it.
    vcl = tmp_path / VCL.name
    vcl.write_bytes(VCL.read_bytes())
    run = subprocess.run(
        [program("varnishd"), "-j", "none", "-C", "-f", str(vcl), "-n", str(tmp_path / "varnish")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    text = VCL.read_text(encoding="utf-8")
    for port in SHIPPED_PORTS:  # both origins of the director, on this host
        assert f'.host = "127.0.0.1";\n\t.port = "{port}";' in text


def nginx_conf(tmp: Path, site: str) -> Path:
    """A minimal nginx.conf around ``site`` (server blocks), everything it writes under ``tmp``."""
    (tmp / "site.conf").write_text(site, encoding="utf-8")
    conf = tmp / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach tmp (mode 0700)
    conf.write_text(
        textwrap.dedent(f"""\
            {user}pid {tmp}/nginx.pid;
            error_log {tmp}/error.log;
            events {{}}
            http {{
                access_log off;
                client_body_temp_path {tmp}/body;
                proxy_temp_path {tmp}/proxy;
                include {tmp}/site.conf;
            }}
            """),
        encoding="utf-8",
    )
    return conf


def nginx_site(tmp: Path, ports: Sequence[int] | None = None, listen: int | None = None) -> str:
    """deploy/nginx-cache.conf with its cache in ``tmp`` (and other origins and port if given)."""
    text = replace_once(
        NGINX_CONF.read_text(encoding="utf-8"), "/var/cache/nginx/feeds", str(tmp / "cache"), NGINX_CONF
    )
    for shipped, port in zip(SHIPPED_PORTS, ports or (), strict=False):
        text = replace_once(text, f"server 127.0.0.1:{shipped} ", f"server 127.0.0.1:{port} ", NGINX_CONF)
    if listen is not None:
        text = replace_once(text, "listen 80;", f"listen {harness.HOST}:{listen};", NGINX_CONF)
    return text


def test_nginx_accepts_the_shipped_cache_conf(tmp_path: Path) -> None:
    conf = nginx_conf(tmp_path, nginx_site(tmp_path))
    run = subprocess.run(
        [program("nginx"), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    text = NGINX_CONF.read_text(encoding="utf-8")
    for directive in (
        "proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;",
        "proxy_cache_background_update on;",
        "proxy_cache_lock on;",
        "proxy_cache_revalidate on;",
    ):
        assert directive in text


# -- Varnish in front of two origins ---------------------------------------------------------


def test_documents_are_cached_and_conditional_requests_answered_by_varnish(
    make_site: MakeSite, stack: Stack
) -> None:
    origins = stack.origins(make_site())
    varnish = stack.varnish(origins)
    paths = [
        *("/feeds/alle.rss", "/feeds/alle.atom", "/feeds/alle.json", "/feeds/alle"),
        *("/feeds.opml", "/", "/articles/erster", archive_path(origins[0], "kurz")),
    ]
    before = len(origin_requests(origins))  # the archive link above

    for path in paths:
        first, second = varnish.fetch(path, GZIP), varnish.fetch(path, GZIP)
        assert (first.status, first.headers["x-cache"]) == (200, "MISS"), path
        assert (second.status, second.headers["x-cache"]) == (200, "HIT"), path
        assert second.body == first.body and "age" in second.headers
        assert "public" in second.headers["cache-control"]
    assert sorted(origin_requests(origins)[before:]) == sorted(paths), "one origin request per document"

    # Both codings are right, each as its own representation (RFC 9110 8.8.3: a strong ETag
    # differs between them), and neither needs the origin again.
    path = "/feeds/alle.atom"
    direct = origins[1].fetch(path)
    packed, plain = varnish.fetch(path, GZIP), varnish.fetch(path)
    assert packed.headers["content-encoding"] == "gzip" and gzip.decompress(packed.body) == direct.body
    assert "content-encoding" not in plain.headers and plain.body == direct.body
    for reply in (packed, plain):
        assert reply.headers["vary"] == "Accept-Encoding" and reply.headers["x-cache"] == "HIT"
    assert plain.headers["etag"].startswith("W/") or plain.headers["etag"] != packed.headers["etag"]

    # Conditional GETs: 304 from Varnish, validators and cache headers as the 200's.
    for reply, coding in ((packed, GZIP), (plain, {})):
        for validator in (
            {"If-None-Match": reply.headers["etag"]},
            {"If-Modified-Since": reply.headers["last-modified"]},
        ):
            answer = varnish.fetch(path, {**coding, **validator})
            assert (answer.status, answer.body) == (304, b""), validator
            assert answer.headers["etag"] == reply.headers["etag"]
            assert answer.headers["cache-control"] == reply.headers["cache-control"]
    stale = varnish.fetch(path, {**GZIP, "If-None-Match": '"not-the-current-one"'})
    assert stale.status == 200 and stale.body == packed.body
    assert len(origin_requests(origins)) == before + len(paths) + 1  # + the direct fetch above


def test_purge_from_loopback_evicts_every_variant_of_that_host(make_site: MakeSite, stack: Stack) -> None:
    origins = stack.origins(make_site())
    varnish = stack.varnish(origins)
    path = "/feeds/alle.atom"
    host = {"Host": "news.example.org"}
    for headers in (host, {**host, **GZIP}):
        varnish.fetch(path, headers)
        assert varnish.fetch(path, headers).headers["x-cache"] == "HIT"
    before = len(origin_requests(origins))

    other = varnish.fetch(path, {"Host": "elsewhere.example.org"}, method="PURGE")
    assert other.status == 200  # nothing of that host was cached: the key is URL and Host
    assert varnish.fetch(path, {**host, **GZIP}).headers["x-cache"] == "HIT"

    purged = varnish.fetch(path, {"Host": "NEWS.example.org:80"}, method="PURGE")  # same host
    assert purged.status == 200
    assert varnish.counter("MAIN.n_obj_purged") >= 1
    plain, packed = varnish.fetch(path, host), varnish.fetch(path, {**host, **GZIP})
    assert plain.headers["x-cache"] == "MISS" and packed.headers["x-cache"] == "HIT"
    assert gzip.decompress(packed.body) == plain.body
    # Neither coding came from the purged object: the one refetch serves both.
    assert origin_requests(origins)[before:] == [path]


def test_metrics_are_not_passed_through_varnish(make_site: MakeSite, stack: Stack) -> None:
    """The origin allows loopback, and Varnish is loopback to it: the VCL answers itself."""
    origins = stack.origins(make_site())
    varnish = stack.varnish(origins)
    assert origins[0].fetch("/metrics").status == 200
    for path in ("/metrics", "//metrics", "/metrics/x", "http://news.example.org/metrics"):
        reply = varnish.fetch(path)
        assert reply.status == 404 and b"feeds_" not in reply.body, path
    assert origin_requests(origins).count("/metrics") == 1  # the direct request above only


def test_behind_varnish_the_polling_budget_judges_each_reader_and_nothing_keeps_a_429(
    make_site: MakeSite, stack: Stack
) -> None:
    """With Varnish in ``polling.proxies``, the origin judges the reader Varnish names in
    X-Forwarded-For (appended to whatever the reader sent); its 429 (no-store) reaches that
    reader only. max-age 0: every request reaches the origin (Varnish revalidates)."""
    no_cache = {"max_age": 0, "stale_while_revalidate": 0, "stale_if_error": 0}
    polling = {"min_interval": 3600, "proxies": ["127.0.0.1"]}
    origins = stack.origins(make_site(config={"defaults": no_cache, "polling": polling}), count=1)
    varnish = stack.varnish(origins)
    path = "/feeds/alle.rss"
    assert varnish.fetch(path, source="127.0.0.2").status == 200
    again = varnish.fetch(path, source="127.0.0.2")
    assert again.status == 429, again
    assert 3590 <= int(again.headers["retry-after"]) <= 3600
    assert again.headers["cache-control"] == "no-store"
    forged = varnish.fetch(path, {"X-Forwarded-For": "198.51.100.7"}, source="127.0.0.2")
    assert forged.status == 429  # the right-most entry is the one Varnish appended
    for reader in ("127.0.0.3", "127.0.0.4"):
        reply = varnish.fetch(path, source=reader)
        assert (reply.status, text_of(reply).startswith("<?xml")) == (200, True), reader
    assert origin_requests(origins).count(path) == 5


def test_purge_from_outside_the_acl_is_refused(make_site: MakeSite, stack: Stack) -> None:
    origins = stack.origins(make_site())
    varnish = stack.varnish(origins, purgers=["192.0.2.1"])  # TEST-NET-1: not this host
    path = "/feeds/alle.rss"
    varnish.fetch(path, GZIP)

    refused = varnish.fetch(path, method="PURGE")

    assert refused.status == 403
    assert varnish.fetch(path, GZIP).headers["x-cache"] == "HIT"
    assert varnish.counter("MAIN.n_purges") == 0


def test_an_edit_is_visible_through_varnish_long_before_max_age(make_site: MakeSite, stack: Stack) -> None:
    """The app purges what changed (``cache.purge``); readers see it long before max_age (five
    minutes; within seconds on an idle machine, the deadline is generous for a busy one)."""
    port = harness.free_port()
    base = f"http://{harness.HOST}:{port}"
    config = make_site(
        config={"site": {"url": f"{base}/"}, "cache": {"purge": [base]}, "defaults": {"max_age": 300}}
    )
    origins = stack.origins(config)
    varnish = stack.varnish(origins, port=port)
    paths = ["/feeds/alle.atom", "/articles/erster", "/"]
    for path in paths:
        varnish.fetch(path, GZIP)
        reply = varnish.fetch(path, GZIP)
        assert reply.headers["x-cache"] == "HIT" and FIRST_TITLE in text_of(reply), path
    before = len(origin_requests(origins))

    edit_title(config, NEW_TITLE)
    saved = time.monotonic()  # PATIENCE is far below max_age: only a purge brings the title
    misses = 0
    for path in paths:

        def updated(path: str = path) -> bool | None:
            nonlocal misses
            reply = varnish.fetch(path, GZIP)
            assert reply.status == 200, path
            misses += reply.headers["x-cache"] == "MISS"
            return True if NEW_TITLE in text_of(reply) else None

        wait_for(
            updated, max(0.0, saved + PATIENCE - time.monotonic()), f"{path}: the new title through Varnish"
        )

    refetched = origin_requests(origins)[before:]
    assert set(refetched) <= set(paths), refetched
    assert len(refetched) == misses, "the origins were asked only after purges"
    assert misses <= varnish.counter("MAIN.n_obj_purged")


def test_stale_while_revalidate_answers_at_once_and_refreshes_behind(
    make_site: MakeSite, stack: Stack
) -> None:
    # max_age: long enough that the refreshed copy is still fresh when the poll below sees it
    config = make_site(config={"defaults": {"max_age": 5, "stale_while_revalidate": 60}})
    origins = stack.origins(config)
    varnish = stack.varnish(origins)
    path = "/feeds/alle.atom"
    first = varnish.fetch(path, GZIP)
    assert "stale-while-revalidate=60" in first.headers["cache-control"]
    edit_title(config, NEW_TITLE)  # no purge configured: Varnish keeps the old version
    for origin in origins:
        wait_for(
            lambda o=origin: True if NEW_TITLE in text_of(o.fetch(path)) else None, PATIENCE, "edit applied"
        )
    before = len(origin_requests(origins))

    def expired() -> harness.Reply | None:
        reply = varnish.fetch(path, GZIP)
        return None if reply.headers["x-cache"] == "HIT" else reply

    stale = wait_for(expired, PATIENCE, "the cached copy expiring")
    assert stale.headers["x-cache"] == "STALE" and FIRST_TITLE in text_of(stale)

    def refreshed() -> harness.Reply | None:
        reply = varnish.fetch(path, GZIP)
        return reply if NEW_TITLE in text_of(reply) else None

    fresh = wait_for(refreshed, PATIENCE, "the refresh")
    assert fresh.headers["x-cache"] == "HIT"  # fetched in the background, not by this request
    assert origin_requests(origins)[before:] == [path]


def test_stale_if_error_while_the_origins_are_down(make_site: MakeSite, stack: Stack) -> None:
    config = make_site(
        config={"defaults": {"max_age": 2, "stale_while_revalidate": 0, "stale_if_error": 86400}}
    )
    origins = stack.origins(config)
    varnish = stack.varnish(origins)
    paths = ["/feeds/alle.atom", "/articles/erster"]
    cached = {path: varnish.fetch(path, GZIP) for path in paths}
    assert "stale-if-error=86400" in cached[paths[0]].headers["cache-control"]
    for origin in origins:
        stop(origin)

    for path in paths:
        for coding in (GZIP, {}):

            def expired(path: str = path, coding: dict[str, str] = coding) -> harness.Reply | None:
                reply = varnish.fetch(path, coding)
                return None if reply.headers["x-cache"] == "HIT" else reply

            stale = wait_for(expired, PATIENCE, f"{path}: the cached copy expiring")
            assert (stale.status, stale.headers["x-cache"]) == (200, "STALE"), (path, coding)
            assert text_of(stale) == text_of(cached[path])
            if coding:  # the very bytes the origin sent
                assert stale.body == cached[path].body
    assert varnish.fetch("/feeds/alle.rss", GZIP).status == 503  # never cached: nothing to serve


# -- nginx in front of one origin --------------------------------------------------------------


def test_nginx_caches_and_serves_stale_while_the_origin_is_down(
    make_site: MakeSite, stack: Stack, tmp_path: Path
) -> None:
    nginx = program("nginx")
    origin = stack.origins(make_site(config={"defaults": {"max_age": 2}}), count=1)[0]
    port = harness.free_port()
    folder = tmp_path / "nginx"
    folder.mkdir()
    conf = nginx_conf(folder, nginx_site(folder, [origin.port, origin.port], listen=port))
    log = folder / "nginx.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [nginx, "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(conf), "-g", "daemon off;"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    proxy = Proxy(process, port, folder, log)
    stack.started.append(proxy)
    proxy.wait_ready()
    # The origin allows loopback, and nginx is loopback to it: nginx answers /metrics itself.
    assert origin.fetch("/metrics").status == 200
    assert [proxy.fetch(p).status for p in ("/metrics", "//metrics", "/metrics/")] == [404, 404, 404]
    path = "/feeds/alle.atom"
    first, second = proxy.fetch(path, GZIP), proxy.fetch(path, GZIP)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    plain = proxy.fetch(path)
    assert "content-encoding" not in plain.headers and gzip.decompress(second.body) == plain.body
    assert origin_requests([origin]).count(path) == 2  # one per coding

    stop(origin)

    def expired() -> harness.Reply | None:
        reply = proxy.fetch(path, GZIP)
        return None if reply.headers["x-cache"] == "HIT" else reply

    stale = wait_for(expired, PATIENCE, "the cached copy expiring")
    assert (stale.status, stale.headers["x-cache"], stale.body) == (200, "STALE", second.body)
