"""The in-process API a web app calls: the producer (``enqueue``) and the ``Batches`` facade.

``worker`` re-exports what a caller needs; these modules hold the code.
"""
