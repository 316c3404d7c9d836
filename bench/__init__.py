"""Benchmarks: ``python -m bench`` runs them all, in order, and prints their figures."""
