"""The send path: one message (``single``) or one chunk of a batch (``group``), under one policy."""
