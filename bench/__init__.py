"""Benchmarks. Not collected by the test suite: performance claims are measured here."""
