"""Imported last by a forkserver started as a new interpreter: it readies it.

In order:

1. blocks SIGINT and SIGTERM (:data:`activities.worker._forkserver.STOP_SIGNALS`) for good: the
   forkserver is in the worker's process group, which a Ctrl-C or a systemd stop signals
   as a whole, and must outlive such a signal; a task process inherits the blocked mask,
   and unblocks it once it ignores them;
2. imports the worker's script, if it defines activities and was run by path, as each
   task process would as it starts: as ``__mp_main__``, so that its
   ``if __name__ == "__main__":`` block does not run;
3. reads what every task process's Step Functions client needs from botocore's data
   files (the service model, endpoints, partitions, retry rules) into the process's
   shared loader (:func:`activities._aws.sfnclient.shared_loader`), by making a client no one
   uses, with placeholder credentials: no call, no lookup of credentials;
4. freezes the heap (:func:`gc.freeze`): the collector leaves alone what the imports
   made, so that the pages a task process shares with the forkserver stay shared.

Not meant to be imported anywhere else.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import multiprocessing.spawn
import os
import signal

import botocore.session

from activities._aws.sfnclient import shared_loader
from activities.worker._forkserver import PRELOAD_MAIN, STOP_SIGNALS


def _read_botocore_data() -> None:
    session = botocore.session.Session()
    session.register_component("data_loader", shared_loader())
    # A bad AWS_PROFILE, say, fails here too: each task process says so when it starts.
    with contextlib.suppress(Exception):
        session.create_client(
            "stepfunctions",
            region_name="us-east-1",
            aws_access_key_id="preload",
            aws_secret_access_key="preload",  # noqa: S106 - a placeholder; no call is made
        )


def _import_main() -> None:
    """Import the worker's script as ``__mp_main__``, as each child would (guarded main)."""
    path = os.environ.pop(PRELOAD_MAIN, None)
    if path is None:
        return
    process = multiprocessing.current_process()
    process._inheriting = True  # type: ignore[attr-defined] # as multiprocessing does
    try:
        multiprocessing.spawn.import_main_path(path)
    finally:
        del process._inheriting  # type: ignore[attr-defined]


signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
_import_main()
_read_botocore_data()
gc.freeze()
