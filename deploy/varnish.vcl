vcl 4.1;
# feeds behind Varnish 7 (Debian's varnish package): deploy/README.md, "Varnish in front".
#
# Caches feeds, archive pages, JSON Feed, OPML and HTML pages for as long as the origin's
# Cache-Control says (public, max-age=N, stale-while-revalidate=S, stale-if-error=E):
#   - fresh for max-age;
#   - then, for stale-while-revalidate seconds, answered stale at once while Varnish fetches
#     the new version in the background (grace);
#   - when the origins are down or failing, answered stale for up to stale-if-error seconds
#     after it expired;
#   - kept a while longer (keep) so that Varnish revalidates with If-None-Match and the
#     origin can answer 304.
# The app sends "PURGE <path>" for every document that changed (config.yaml: cache.purge);
# PURGE is taken from the purgers ACL only.
#
# Test: varnishd -C -f /etc/varnish/feeds.vcl > /dev/null (tests/test_cache.py runs it).

import directors;
import std;

# The origins: the production server (granian, README "Production") on each host. One is
# enough; a second is shown: requests alternate between the healthy ones.
probe healthz {
	.url = "/healthz";
	.timeout = 1s;
	.interval = 2s;
	.window = 5;
	.threshold = 3;
	.initial = 3;  # healthy from the start: no 503s while the first probes run
}

backend origin1 {
	.host = "127.0.0.1";
	.port = "8000";
	.probe = healthz;
	.connect_timeout = 1s;
	.first_byte_timeout = 30s;
}

backend origin2 {
	.host = "127.0.0.1";
	.port = "8001";
	.probe = healthz;
	.connect_timeout = 1s;
	.first_byte_timeout = 30s;
}

# Who may PURGE: the hosts running feeds (they send the purges).
acl purgers {
	"127.0.0.1";
	"::1";
}

sub vcl_init {
	# Every origin renders byte-identical documents with identical validators, so any of them
	# may answer any request. A sick origin (its /healthz failing 3 of the last 5 probes) is
	# skipped until it recovers.
	new origins = directors.round_robin();
	origins.add_backend(origin1);
	origins.add_backend(origin2);
}

sub vcl_recv {
	set req.backend_hint = origins.backend();

	# One cache key (URL and Host, the default vcl_hash) per document: an absolute-form target
	# names the host itself (RFC 9112 3.2.2); case, a default port and a trailing dot make no
	# other host; and the app ignores query strings, so a reader's cache-buster neither
	# bypasses the cache nor escapes a purge.
	if (req.url ~ "^(?i)https?://") {
		set req.http.Host = regsub(req.url, "^(?i)https?://([^/?#]*).*$", "\1");
		set req.url = regsub(req.url, "^(?i)https?://[^/?#]*", "");
	}
	if (req.http.Host) {
		set req.http.Host = regsub(std.tolower(req.http.Host), "\.?(:(80|443))?$", "");
	}
	set req.url = regsub(req.url, "\?.*$", "");
	if (req.url !~ "^/") {
		set req.url = "/" + req.url;
	}

	# /metrics is for the operator's monitoring, asked of each origin directly: the origin
	# allows loopback, and to it every request from here comes from loopback.
	if (req.url ~ "^/+metrics(/|$)") {
		return (synth(404, "Not found"));
	}

	if (req.method == "PURGE") {
		if (client.ip !~ purgers) {
			return (synth(403, "PURGE is not allowed from " + client.ip));
		}
		# The object of this URL and Host goes, and with it every coding clients get of it.
		return (purge);
	}

	# Accept-Encoding: "gzip" or nothing ("gzip;q=0" refuses it, RFC 9110 12.5.3). Varnish
	# (http_gzip_support, on by default) asks the origin for gzip, stores that one copy and
	# gunzips it for the clients that do not take gzip, weakening the ETag for them
	# (W/"...-gzip", as RFC 9110 8.8.3 allows). So each document is one object: one origin
	# fetch per change, and one PURGE clears it for every client. (Varnish therefore leaves
	# Accept-Encoding out of the origin's Vary, and passes the Vary header on to clients.)
	if (req.http.Accept-Encoding ~ "(?i)(^|,)\s*gzip\s*(,|;|$)"
	    && req.http.Accept-Encoding !~ "(?i)(^|,)\s*gzip\s*;\s*q\s*=\s*0(\.0*)?\s*(,|$)") {
		set req.http.Accept-Encoding = "gzip";
	} else {
		unset req.http.Accept-Encoding;
	}

	# feeds sets and reads no cookies: a browser's cookies for the domain must not make every
	# page view a pass to the origin.
	unset req.http.Cookie;

	if (req.restarts == 0) {
		unset req.http.X-Feeds-Refresh;
		unset req.http.X-Feeds-Stale;
	}
	if (req.http.X-Feeds-Stale) {
		# The refresh failed on every origin: take the stale object after all.
		unset req.http.X-Feeds-Refresh;
		set req.grace = 3650d;
	} else if (req.http.X-Feeds-Refresh) {
		# vcl_hit found the object past stale-while-revalidate: look it up without grace, so
		# this request fetches (conditionally, with the stale object's validators).
		set req.grace = 0s;
	}
	# Otherwise an object in grace is a hit; vcl_hit decides whether it may be served stale.
}

sub vcl_hit {
	# The object's grace covers both stale-while-revalidate and stale-if-error (see
	# vcl_backend_response). Past stale-while-revalidate it may only be served while the
	# origins fail: with a healthy origin, fetch first (restart without grace).
	if (obj.ttl <= 0s && !req.http.X-Feeds-Stale
	    && obj.ttl + std.duration(regsub(obj.http.Cache-Control,
	        "^(?i)(.*[\s,])?stale-while-revalidate\s*=\s*(\d+)(\D.*)?$", "\2s"), 0s) <= 0s
	    && std.healthy(req.backend_hint)) {
		set req.http.X-Feeds-Refresh = "1";
		return (restart);
	}
	# Fresh, or within stale-while-revalidate (Varnish delivers it and refreshes it in the
	# background), or the origins are sick (stale-if-error).
	return (deliver);
}

sub vcl_miss {
	if (req.http.X-Feeds-Stale) {
		# The fetch failed and no stale copy is left to stand in for it.
		return (synth(503, "Origin unavailable"));
	}
	return (fetch);
}

sub vcl_backend_fetch {
	if (bereq.http.X-Feeds-Stale) {
		# The background refresh of a stale object that is being served because a refresh
		# just failed on every origin: the next request past stale-while-revalidate tries again.
		return (abandon);
	}
}

sub vcl_backend_response {
	if (beresp.status >= 500) {
		# Another origin may do better (round robin: the other one); after that a failed
		# refresh keeps the stale object, which the client then gets (stale-if-error).
		if (bereq.retries == 0) {
			return (retry);
		}
		if (bereq.is_bgfetch || bereq.http.X-Feeds-Refresh) {
			return (abandon);
		}
		set beresp.uncacheable = true;
		set beresp.ttl = 0s;
		return (deliver);
	}
	if (beresp.http.Cache-Control !~ "(?i)(^|[\s,])(s-maxage|max-age)\s*=") {
		# Only what the origin marks cacheable is cached (documents; not health, metrics or
		# a 404, which the next request asks the origin about again).
		set beresp.uncacheable = true;
		set beresp.ttl = 0s;
		return (deliver);
	}
	# Varnish 7 has set beresp.ttl from max-age and beresp.grace from stale-while-revalidate
	# (default_grace, 10 s, without it). Extend grace to stale-if-error: vcl_hit serves the
	# part past stale-while-revalidate only while the origins fail.
	if (beresp.http.Cache-Control ~ "(?i)(^|[\s,])stale-if-error\s*=\s*\d+") {
		set beresp.http.X-Feeds-Sie = regsub(beresp.http.Cache-Control,
		    "^(?i)(.*[\s,])?stale-if-error\s*=\s*(\d+)(\D.*)?$", "\2s");
		if (std.duration(beresp.http.X-Feeds-Sie, 0s) > beresp.grace) {
			set beresp.grace = std.duration(beresp.http.X-Feeds-Sie, 0s);
		}
		unset beresp.http.X-Feeds-Sie;
	}
	# Past grace, an object is kept for an hour to revalidate: the origin answers 304.
	set beresp.keep = 1h;
	# The built-in rules follow (no-store, private, Set-Cookie, Vary: *: not cached).
}

sub vcl_backend_error {
	if (bereq.retries == 0) {
		return (retry);
	}
	if (bereq.is_bgfetch || bereq.http.X-Feeds-Refresh) {
		return (abandon);
	}
}

sub vcl_deliver {
	if (obj.hits > 0) {
		if (obj.ttl > 0s) {
			set resp.http.X-Cache = "HIT";
		} else {
			set resp.http.X-Cache = "STALE";
		}
	} else {
		set resp.http.X-Cache = "MISS";
	}
	return (deliver);
}

sub vcl_synth {
	if (resp.status == 503 && req.http.X-Feeds-Refresh && !req.http.X-Feeds-Stale) {
		# The refresh failed on every origin: serve the stale object (stale-if-error).
		set req.http.X-Feeds-Stale = "1";
		return (restart);
	}
}
