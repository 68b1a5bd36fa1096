"""The limit for async work: one asyncio loop, its boto3 calls in threads, no framework.

    python -m benchmarks.bare_async --activity bench-Await --tasks 500

``--tasks`` coroutines each poll (``asyncio.to_thread``), await a second of simulated
I/O (``asyncio.sleep(1)``) and send the outcome (``asyncio.to_thread``), until killed;
one boto3 client serves them all, its calls in a pool of ``--call-threads`` threads.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures

import boto3
import botocore.config

from benchmarks.endpoint import ARN_PREFIX


async def serve(client: object, arn: str) -> None:
    """Poll, wait a second, answer: for ever."""
    while True:
        task = await asyncio.to_thread(
            client.get_activity_task,  # type: ignore[attr-defined]
            activityArn=arn,
            workerName="bare-async",
        )
        token = task.get("taskToken")
        if token:
            await asyncio.sleep(1)
            await asyncio.to_thread(
                client.send_task_success,  # type: ignore[attr-defined]
                taskToken=token,
                output=task["input"],
            )


async def main(arn: str, tasks: int, call_threads: int) -> None:
    """``tasks`` coroutines of :func:`serve` on one loop."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(call_threads))
    config = botocore.config.Config(read_timeout=70, max_pool_connections=call_threads)
    client = boto3.client("stepfunctions", config=config)
    await asyncio.gather(*(serve(client, arn) for _ in range(tasks)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activity", required=True)
    parser.add_argument("--tasks", type=int, default=500, help="coroutines at once")
    parser.add_argument("--call-threads", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(ARN_PREFIX + args.activity, args.tasks, args.call_threads))
