"""Step Functions calls, internal to the framework.

The client (``sfnclient``), the direct path (``wire``: SigV4 over the framework's own
connections, ``sigv4``), the retry policy (``retry``) and the watch on outages
(``outage``).
"""
