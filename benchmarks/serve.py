"""Serve one benchmark workload with the sfn-activities worker until killed.

    python -m benchmarks.serve Nothing --processes 4

(The ``activities worker`` command serves a whole module; a benchmark serves one activity.)
"""

from __future__ import annotations

import argparse
import logging
import sys

from activities import Worker
from benchmarks import workloads

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=["Nothing", "Burn", "Dispatch", "Chatty"])
    pool = parser.add_mutually_exclusive_group(required=True)
    pool.add_argument("--processes", type=int)
    pool.add_argument("--threads", type=int)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level)
    activity = getattr(workloads, args.workload)
    sys.exit(Worker([activity], processes=args.processes, threads=args.threads).run())
