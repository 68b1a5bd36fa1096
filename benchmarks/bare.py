"""The limit: a bare boto3 polling loop, in threads and processes, with no framework.

python -m benchmarks.bare --activity bench-Nothing --threads 8 --processes 2 --work zero
python -m benchmarks.bare --activity bench-Many-00 bench-Many-01 --threads 1 --work zero

With several activities, every process runs ``--threads`` threads for each of them, each
thread polling its own activity. With one process the threads run in this one, so that
"1 proc" is one process, the yardstick of the footprint scenario; with more, this one
starts them and waits.
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time

import boto3
import botocore.config

from benchmarks.endpoint import ARN_PREFIX
from benchmarks.work import burn

#: Held while a thread makes its client: boto3's default session is not safe to make
#: clients from in several threads at once.
CLIENT_LOCK = threading.Lock()


def loop(arn: str, work: str, connections: int) -> None:
    """Poll and answer tasks until killed."""
    config = botocore.config.Config(read_timeout=70, max_pool_connections=connections)
    with CLIENT_LOCK:
        client = boto3.client("stepfunctions", config=config)
    while True:
        task = client.get_activity_task(activityArn=arn, workerName="bare")
        token = task.get("taskToken")
        if token:
            if work == "sleep":
                time.sleep(1)  # a second of I/O, the sync way
            output = task["input"] if work in ("zero", "sleep") else str(burn())
            client.send_task_success(taskToken=token, output=output)


def process(arns: list[str], work: str, threads: int) -> None:
    """One process of ``threads`` polling threads for each activity of ``arns``."""
    workers = [
        threading.Thread(target=loop, args=(arn, work, 2)) for arn in arns for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activity", required=True, nargs="+")
    parser.add_argument("--threads", type=int, default=1, help="per activity")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--work", choices=["zero", "cpu", "sleep"], default="zero")
    args = parser.parse_args()
    arns = [ARN_PREFIX + activity for activity in args.activity]
    if args.processes == 1:
        process(arns, args.work, args.threads)
    else:
        children = [
            multiprocessing.Process(target=process, args=(arns, args.work, args.threads))
            for _ in range(args.processes)
        ]
        for child in children:
            child.start()
        for child in children:
            child.join()
