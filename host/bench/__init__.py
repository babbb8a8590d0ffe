"""Benchmarks behind `make bench`: each prints a table measured in the same run as its reference."""
