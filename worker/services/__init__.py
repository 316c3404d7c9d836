"""Services: the send pipeline's logic as plain functions and objects over their collaborators.

They take the ledger session, the gateway client and the throttle as arguments, so they are
tested without Celery and without HTTP mocks.
"""
