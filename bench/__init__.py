"""Benchmarks (not tests): each ``bench_<name>`` module measures figures with baselines
from the same run; ``python -m bench`` runs them all (or some by name), prints one table
and writes JSON."""
