"""How much a task process's memory grows while a large value goes through S3.

    python -m benchmarks.claimcheck [--megabytes 50]

Starts LocalStack (Step Functions and S3, see :mod:`activities.local`). Then, each in a
fresh process: the *result* side stores a result of ``--megabytes`` MB with
:class:`transport.S3ClaimCheck` (``serialize_result``, what a task process does with
``run()``'s return value, held already); the *input* side reads a reference of that size,
stored by another process, into a task's arguments (``deserialize_arguments``, what a
task process does before ``run()``), the decoded argument included. Each reports the
growth of its peak resident memory (``ru_maxrss``) over its peak before, in multiples of
the payload. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import subprocess
import sys
import time
from typing import Any

from activities.local import LocalStepFunctions

BUCKET = "sfn-activities-bench-claims"


def claims(endpoint: str) -> Any:
    """The transport under test, with an S3 client of ``endpoint`` made already."""
    import boto3  # noqa: PLC0415 - in the measured processes only

    from transport import S3ClaimCheck  # noqa: PLC0415

    def client() -> Any:
        session = boto3.Session(
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106 - LocalStack's dummy credentials
            region_name="us-east-1",
        )
        return session.client("s3", endpoint_url=endpoint)

    transport = S3ClaimCheck(BUCKET, client=client)
    transport.client()  # made before the measure: not the payload's cost
    return transport


def store(endpoint: str, size: int) -> str:
    """Store an input of ``size`` characters; its reference, as a task's input."""
    return str(claims(endpoint).serialize_arguments("i" * size))


def result_side(endpoint: str, size: int) -> dict[str, Any]:
    """Store a result of ``size`` characters; the peak memory's growth."""
    transport = claims(endpoint)
    value = "r" * size
    before = _peak()
    started = time.perf_counter()
    transport.serialize_result(value)
    return _measured("result", size, before, started)


def input_side(endpoint: str, size: int, reference: str) -> dict[str, Any]:
    """Read ``reference`` into arguments; the peak memory's growth, the argument included."""
    transport = claims(endpoint)

    def run(value: str) -> None: ...

    signature = inspect.signature(run, eval_str=True)
    before = _peak()
    started = time.perf_counter()
    args, _ = transport.deserialize_arguments(reference, signature)
    measured = _measured("input", size, before, started)
    assert len(args[0]) == size  # noqa: S101 - a broken round trip is no measure
    return measured


def _measured(side: str, size: int, before: int, started: float) -> dict[str, Any]:
    seconds = time.perf_counter() - started
    return {"side": side, "bytes": size, "growth": _peak() - before, "seconds": seconds}


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _in_a_new_process(*arguments: str) -> Any:
    command = [sys.executable, "-m", "benchmarks.claimcheck", *arguments]
    done = subprocess.run(command, check=True, capture_output=True, text=True)  # noqa: S603
    return json.loads(done.stdout)


def main() -> int:
    """Measure both sides; print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.claimcheck")
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--side", choices=["store", "result", "input"], help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.megabytes * 10**6
    if args.side == "store":
        print(json.dumps(store(args.endpoint, size)))
        return 0
    if args.side == "result":
        print(json.dumps(result_side(args.endpoint, size)))
        return 0
    if args.side == "input":
        print(json.dumps(input_side(args.endpoint, size, args.reference)))
        return 0
    with LocalStepFunctions() as local:
        local.s3_client().create_bucket(Bucket=BUCKET)
        common = ["--endpoint", local.endpoint_url, "--megabytes", str(args.megabytes)]
        reference = _in_a_new_process("--side", "store", *common)
        rows = [
            _in_a_new_process("--side", "result", *common),
            _in_a_new_process("--side", "input", "--reference", reference, *common),
        ]
    print("| side | payload | peak memory growth | x payload | seconds |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['side']} | {row['bytes'] / 10**6:.0f} MB | "
            f"{row['growth'] / 10**6:.0f} MB | {row['growth'] / row['bytes']:.2f}x | "
            f"{row['seconds']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
