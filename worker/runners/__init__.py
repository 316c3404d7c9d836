"""Running the system's processes: ASGI servers under uvicorn with their limits, and Celery
worker and beat processes for the demo and the tests.
"""
