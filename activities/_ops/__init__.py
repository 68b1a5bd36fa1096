"""Operations, internal to the framework: the counted metrics, Prometheus, the endpoint.

What the worker counts (``metrics``, ``processmetrics``), Prometheus' view of it
(``prometheus``), and the HTTP endpoint of ``/metrics``, ``/healthz`` and ``/readyz``
(``endpoint``).
"""
