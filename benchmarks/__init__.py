"""Benchmarks of the followup analysis and service (run as scripts or modules)."""
