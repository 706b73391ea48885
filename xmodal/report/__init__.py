"""Self-contained reports of runs: ``metrics.json`` and a ``report.html`` with everything inlined."""
