"""Serve one benchmark workload with the sfn-activities worker until killed.

    python -m benchmarks.serve Nothing --processes 4

The benchmark runner starts the ``activities worker`` command itself, on the workload's
module (``activities worker benchmarks.workloads.nothing``); this is the same worker from
Python, logging as the command does: its format, INFO by default, botocore at WARNING
unless DEBUG.
"""

from __future__ import annotations

import argparse
import logging
import sys

from activities import Worker
from activities.worker._childlog import LOG_FORMAT
from benchmarks import workloads

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=sorted(workloads.__all__))
    parser.add_argument("--processes", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    if args.log_level != "DEBUG":
        logging.getLogger("botocore").setLevel(logging.WARNING)
    activity = getattr(workloads, args.workload)
    sys.exit(Worker([activity], processes=args.processes, threads=args.threads).run())
