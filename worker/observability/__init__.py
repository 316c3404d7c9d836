"""Observability, a leaf every layer may use: redacted logs, Prometheus metrics, their endpoint,
and the ledger gauges read at scrape time (the one part that reads the ledger).
"""
