"""What the tests share with the benchmark and the soak under bench/: servers as real processes on
loopback (:mod:`support.harness`) and the soak itself (:mod:`support.soak`).

Tests import ``from support import harness``; the scripts under ``bench/`` put ``tests/`` on
``sys.path`` and do the same. Nothing here imports from ``bench/``.
"""
