"""Benchmarks that compare the hub with baselines in one run (`make bench`)."""
