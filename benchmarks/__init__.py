"""The benchmark harness (``python -m benchmarks.bench``, ``make bench``); see BENCHMARKS.md."""
