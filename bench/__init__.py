"""Benchmarks (not tests): each ``bench_<name>`` module measures figures with baselines
from the same run; ``python -m bench`` runs them all (or some by name), prints one table
and writes JSON (``bench/results/``, git-ignored).

Modules:
- ``__main__``: the runner (``--quick``, ``--full``, ``--sizes``, ``--list``, ``--dry``);
- ``common``: percentiles, the row type, the table printer, the JSON writer, ``main_for``;
- ``nodeproc``: a real ``rae-edge serve`` in its own process (port, token, RSS);
- ``bench_briefing``: scan/briefing and search latency at 10k/100k (1M on request)
  memories with exact numpy search as the floor, ANN recall@10;
- ``bench_quality``: hybrid vs BM25-only vs vector-only on the shared data sets;
- ``bench_ingest``: ingest throughput vs raw model throughput, peak RSS;
- ``bench_voice``: transcription speed, word error rate, upload to searchable correction;
- ``bench_push``: push delivery after ingest; ``bench_e2e_lag``: plant to plant lag;
- ``bench_sync`` / ``bench_sync_edge``: edge to central throughput and backlog drain;
- ``bench_restore``: restore of 100k memories and offline bundle install;
- ``bench_coldstart``: node cold start and restart time, RSS after first search, peak RSS;
- ``bench_load``: 200 push tablets, 50 scans/s, 5 searches/s with ingest running.

How each data set is derived from the real texts in ``../shared/data`` (seeded) is said in
the docstring of the module that builds it.
"""
