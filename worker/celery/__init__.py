"""The Celery adapter: the app, where work goes, the tasks, the worker's signals, its runtime.

``celery -A worker ...`` finds ``worker.celery.app``. Task and queue names are data in
``worker.celery.routing``; each task is a few lines over a service function.
"""

from worker.celery.application import app

__all__ = ["app"]
