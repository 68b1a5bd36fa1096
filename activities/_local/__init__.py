"""``activities local``'s helpers, internal to the framework.

Installing LocalStack (``install``), the launcher that runs it on 127.0.0.1 only
(``main``) and the check of what it listens on (``listening``).
"""
