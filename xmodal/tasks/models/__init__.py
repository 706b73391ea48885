"""Reference models of the benchmark tasks, composed from ``xmodal.nn`` building blocks; one module per model."""
