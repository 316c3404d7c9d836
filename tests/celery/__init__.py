"""Tests of the Celery adapter."""
