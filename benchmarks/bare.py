"""The limit: a bare boto3 polling loop, in threads and processes, with no framework.

python -m benchmarks.bare --activity bench-Nothing --threads 8 --processes 2 --work zero
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading

import boto3
import botocore.config

from benchmarks.endpoint import ARN_PREFIX
from benchmarks.work import burn


def loop(arn: str, work: str, connections: int) -> None:
    """Poll and answer tasks until killed."""
    config = botocore.config.Config(read_timeout=70, max_pool_connections=connections)
    client = boto3.client("stepfunctions", config=config)
    while True:
        task = client.get_activity_task(activityArn=arn, workerName="bare")
        token = task.get("taskToken")
        if token:
            output = task["input"] if work == "zero" else str(burn())
            client.send_task_success(taskToken=token, output=output)


def process(arn: str, work: str, threads: int) -> None:
    """One process of ``threads`` polling threads."""
    workers = [threading.Thread(target=loop, args=(arn, work, 2)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activity", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--work", choices=["zero", "cpu"], default="zero")
    args = parser.parse_args()
    arn = ARN_PREFIX + args.activity
    children = [
        multiprocessing.Process(target=process, args=(arn, args.work, args.threads))
        for _ in range(args.processes)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
