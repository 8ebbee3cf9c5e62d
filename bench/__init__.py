"""rescue-flow's benchmarks: ``make bench`` or ``python -m bench [--quick]``.

One module per benchmark (b1_overhead, b1h_history, b2_end_to_end,
b3_parallel, b4_memory, b5_intake), a shared harness, the runner (run.py)
and the report writer (report.py). docs/benchmarks.md has the results.
"""
