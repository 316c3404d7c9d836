"""The fault suite: the whole system (simulator, Redis, PostgreSQL, workers, beat) under trouble.

Each case runs messages through real processes while something breaks, then audits the ledger
against what the gateway saw (``tests.chaos.audit``). ``CHAOS_MESSAGES`` sets the size; ``make
chaos`` runs it at full size.
"""
