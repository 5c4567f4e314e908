"""What ``/healthz`` and ``feeds check`` say about a published snapshot: problems, and whether the
site serves a last good state (``degraded``) and why.

A load balancer probes ``/healthz`` every second or so: everything here is read from the
snapshot the writer published (counts and problems were computed when it was), never from disk.
"""

from __future__ import annotations

import os
from collections.abc import Collection

from . import fields
from .config import SiteConfig
from .errors import Problem, Severity
from .live import Snapshot


def problems(snapshot: Snapshot, used_topics: Collection[str]) -> list[Problem]:
    """The config's problems (a broken file being ignored), unused topic names, every file's."""
    found = list(snapshot.config_error.problems) if snapshot.config_error else []
    return found + unused_topic_names(snapshot.config, used_topics) + list(snapshot.problems)


def unused_topic_names(config: SiteConfig, used: Collection[str]) -> list[Problem]:
    """A ``topics:`` entry no article uses is most likely a misspelt slug."""
    return [
        Problem(
            str(config.path),
            named.line or None,
            f"topics.{named.slug}: no article has this topic; its title is unused"
            + fields.did_you_mean(named.slug, used),
            Severity.WARNING,
        )
        for named in config.topic_names
        if named.slug not in used
    ]


def report(snapshot: Snapshot, feeds: int, ledger_problem: str | None) -> dict[str, object]:
    """The ``/healthz`` document: ``degraded`` with the reasons while a last good state is served."""
    reasons = list(snapshot.degraded)
    if ledger_problem and not any(ledger_problem in reason for reason in reasons):
        reasons.append(ledger_problem)
    if snapshot.config_error is not None:
        reasons.insert(0, "config.yaml is broken; serving the last good config")
    status: dict[str, object] = {"status": "degraded" if reasons else "ok"}
    if reasons:
        status["reason"] = "; ".join(reasons)
    if snapshot.config_error is not None:
        status["errors"] = [str(p) for p in snapshot.config_error.problems]
    if snapshot.upgrading:
        status["upgrading"] = (
            "building the index for this version; serving an earlier version's index meanwhile, "
            "answers are not cacheable until done"
        )
    elif not snapshot.verified:
        status["checking"] = "comparing the files with the index; answers are not cacheable until done"
    config_problems = len(snapshot.config_error.problems) if snapshot.config_error else 0
    status.update(
        articles=snapshot.articles,
        feeds=feeds,
        problems=len(snapshot.problems) + config_problems,
        pid=os.getpid(),
    )
    return status
