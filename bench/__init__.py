"""Benchmarks: `python -m bench.run` (all), `python -m bench.run --only backbone` (one).

Figures and how to read them: docs/benchmarks.md. Benchmarks never assert on time;
they print figures, each next to a baseline measured in the same run.
"""
