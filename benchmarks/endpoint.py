"""A fast in-memory Step Functions activity endpoint, for benchmarks.

It speaks the wire protocol botocore uses (JSON 1.0 over HTTP/1.1 keep-alive,
``X-Amz-Target: AWSStepFunctions.<Operation>``) for CreateActivity, GetActivityTask (a long
poll), SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat, answers from memory on one
asyncio loop with Nagle's algorithm off, and can wait a fixed delay before each answer to
stand for the round trip to AWS. Three calls of its own (``X-Amz-Target: Bench.<Op>``)
drive a benchmark: ``Load`` queues task inputs, ``Stats`` reads back what happened (and
how many polls wait now), ``Reset`` forgets it all. ListActivities and DescribeActivity
answer too, for peer libraries that look activities up.

Faults, set by ``Fault`` (or on the command line) and kept until the next ``Fault`` or
``Reset``: ``{"freeze": S}`` answers nothing for S seconds (requests that arrive, and
answers ready, wait until it thaws, as a hung service would); ``{"throttle": P}`` refuses
each activity call with ``ThrottlingException`` at random with probability P;
``{"bucket": N, "refill": R}`` runs a token bucket of N calls refilled at R per second for
each operation, as Step Functions does per account. ``Stats`` counts the calls throttled,
and with ``"rates": true`` returns, for each whole second, the calls and the throttled
calls of each operation.

A ``Load`` with ``"record": true`` notes, for each of its tasks, the monotonic time it was
queued, handed out (a GetActivityTask returned it) and completed (its SendTaskSuccess or
SendTaskFailure arrived); ``Stats`` with ``"latencies": true`` returns the seconds from
queued to handed out and from queued to completed, one per task that got that far.

    python -m benchmarks.endpoint --port 8999 --delay 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import socket
import time
from collections import defaultdict
from typing import Any

ARN_PREFIX = "arn:aws:states:us-east-1:123456789012:activity:"

#: The operations of the activity API, which faults apply to.
ACTIVITY_CALLS = frozenset(
    {"GetActivityTask", "SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"}
)

OK = 200


class Endpoint:
    """The state of the fake service: queues of tasks per activity, and what was sent."""

    def __init__(self, *, delay: float, poll_wait: float) -> None:
        self.delay = delay
        self.poll_wait = poll_wait
        self.generation = 0
        #: Connections open now, each served by one coroutine.
        self.connections = 0
        self.reset()

    def reset(self) -> None:
        """Forget every task and every count."""
        self.queues: dict[str, asyncio.Queue[tuple[str, str]]] = defaultdict(asyncio.Queue)
        self.tokens = itertools.count(1)
        self.open: set[str] = set()
        self.counts: dict[str, int] = defaultdict(int)
        self.first_handed_out: float | None = None
        self.last_completed: float | None = None
        self.outputs: list[str] = []
        # Monotonic times of the tasks loaded with "record", by token.
        self.queued_at: dict[str, float] = {}
        self.handed_out_at: dict[str, float] = {}
        self.completed_at: dict[str, float] = {}
        # Polls waiting now; those of a contender before the reset are not counted.
        self.generation += 1
        self.waiting = 0
        self.fault({})

    def fault(self, body: dict[str, Any]) -> None:
        """Set the faults of ``body`` (see the module's docstring); the others end."""
        self.frozen_until = time.monotonic() + body.get("freeze", 0.0)
        self.throttle = float(body.get("throttle", 0.0))
        self.bucket_size = float(body.get("bucket", 0.0))
        self.refill = float(body.get("refill", 0.0))
        self.tokens_left: dict[str, tuple[float, float]] = {}  # operation: (tokens, when)
        # Per whole second: operation -> [calls, throttled].
        self.rates: dict[int, dict[str, list[int]]] = defaultdict(
            lambda: defaultdict(lambda: [0, 0])
        )

    async def thaw(self) -> None:
        """Wait while the endpoint is frozen."""
        while (left := self.frozen_until - time.monotonic()) > 0:
            await asyncio.sleep(left)

    def throttled(self, operation: str) -> bool:
        """Whether this call of ``operation`` is refused by the faults set."""
        now = time.monotonic()
        counts = self.rates[int(now)][operation]
        counts[0] += 1
        refused = bool(self.throttle) and random.random() < self.throttle  # noqa: S311
        if self.bucket_size and not refused:
            tokens, then = self.tokens_left.get(operation, (self.bucket_size, now))
            tokens = min(self.bucket_size, tokens + (now - then) * self.refill)
            refused = tokens < 1
            self.tokens_left[operation] = (tokens if refused else tokens - 1, now)
        if refused:
            counts[1] += 1
            self.counts["throttled"] += 1
        return refused

    async def call(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one call: (HTTP status, JSON body)."""
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            return 400, {"__type": "UnknownOperationException", "message": operation}
        if operation in ACTIVITY_CALLS and self.throttled(operation):
            return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
        result: tuple[int, dict[str, Any]] = await handler(body)
        return result

    async def op_CreateActivity(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802 - the API's names
        return 200, {"activityArn": ARN_PREFIX + body["name"], "creationDate": time.time()}

    async def op_ListActivities(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        activities = [
            {"activityArn": arn, "name": arn.rpartition(":")[2], "creationDate": 0}
            for arn in self.queues
        ]
        return 200, {"activities": activities}

    async def op_DescribeActivity(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        arn = body["activityArn"]
        return 200, {"activityArn": arn, "name": arn.rpartition(":")[2], "creationDate": 0}

    async def op_GetActivityTask(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        self.counts["polls"] += 1
        queue = self.queues[body["activityArn"]]
        generation = self.generation
        self.waiting += 1
        try:
            token, data = await asyncio.wait_for(queue.get(), self.poll_wait)
        except TimeoutError:
            self.counts["empty_polls"] += 1
            return 200, {}
        finally:
            if generation == self.generation:
                self.waiting -= 1
        now = time.monotonic()
        self.counts["handed_out"] += 1
        if self.first_handed_out is None:
            self.first_handed_out = now
        if token in self.queued_at:
            self.handed_out_at[token] = now
        self.open.add(token)
        return 200, {"taskToken": token, "input": data}

    async def op_SendTaskSuccess(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        return self._complete(body, "succeeded", body.get("output", ""))

    async def op_SendTaskFailure(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        return self._complete(body, "failed", body.get("error", ""))

    async def op_SendTaskHeartbeat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        if body["taskToken"] not in self.open:
            return 400, {"__type": "TaskTimedOut", "message": "no such task"}
        self.counts["heartbeats"] += 1
        return 200, {}

    def _complete(self, body: dict[str, Any], kind: str, detail: str) -> tuple[int, dict[str, Any]]:
        token = body["taskToken"]
        if token not in self.open:
            self.counts["refused_outcomes"] += 1  # a task closed already: reported twice
            # What came second, for a diagnosis: "refused succeeded", "refused failed ERROR".
            self.counts[" ".join(filter(None, ("refused", kind, kind == "failed" and detail)))] += 1
            return 400, {"__type": "TaskTimedOut", "message": "no such task"}
        self.open.discard(token)
        self.counts[kind] += 1
        self.last_completed = time.monotonic()
        if token in self.queued_at:
            self.completed_at[token] = self.last_completed
        self.outputs.append(detail)
        return 200, {}

    async def op_Load(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        queue = self.queues[ARN_PREFIX + body["activity"]]
        for _ in range(body["count"]):
            token = f"token-{next(self.tokens):08d}-{'t' * 100}"
            if body.get("record"):
                self.queued_at[token] = time.monotonic()
            queue.put_nowait((token, body["input"]))
        return 200, {}

    async def op_Stats(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        elapsed = None
        if self.first_handed_out is not None and self.last_completed is not None:
            elapsed = self.last_completed - self.first_handed_out
        stats: dict[str, Any] = {
            **self.counts,
            "elapsed": elapsed,
            "waiting": self.waiting,
            "connections": self.connections,
        }
        stats["open"] = len(self.open)
        stats["queued"] = sum(queue.qsize() for queue in self.queues.values())
        stats["queued_by"] = {
            arn.rpartition(":")[2]: queue.qsize() for arn, queue in self.queues.items()
        }
        if body.get("outputs"):
            stats["outputs"] = self.outputs
        if body.get("rates"):
            stats["rates"] = {
                str(second): {operation: list(pair) for operation, pair in ops.items()}
                for second, ops in sorted(self.rates.items())
            }
        if body.get("latencies"):
            stats["recorded"] = len(self.queued_at)
            stats["latencies"] = {
                "handed_out": self._since_queued(self.handed_out_at),
                "completed": self._since_queued(self.completed_at),
            }
        return 200, stats

    def _since_queued(self, times: dict[str, float]) -> list[float]:
        """Seconds from queued to each of ``times``, in the order the tasks were queued."""
        return [times[token] - queued for token, queued in self.queued_at.items() if token in times]

    async def op_Reset(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        self.reset()
        return 200, {}

    async def op_Fault(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        self.fault(body)
        return 200, {}


async def serve_connection(
    endpoint: Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve the requests of one keep-alive connection, in order."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    endpoint.connections += 1
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            length, target = 0, ""
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"x-amz-target":
                    target = value.strip().decode()
            body = json.loads(await reader.readexactly(length) or b"{}") if length else {}
            ours = target.startswith("Bench.")
            if not ours:
                await endpoint.thaw()
            if endpoint.delay and not ours:
                await asyncio.sleep(endpoint.delay)
            status, payload = await endpoint.call(target.rpartition(".")[2], body)
            if not ours:
                await endpoint.thaw()  # frozen while it was answered
            data = json.dumps(payload).encode()
            head = (
                f"HTTP/1.1 {status} {'OK' if status == OK else 'Bad Request'}\r\n"
                f"Content-Type: application/x-amz-json-1.0\r\n"
                f"x-amzn-RequestId: 0\r\nContent-Length: {len(data)}\r\n\r\n"
            )
            writer.write(head.encode() + data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        endpoint.connections -= 1
        writer.close()


async def main(port: int, delay: float, poll_wait: float, faults: dict[str, float]) -> None:
    """Serve on 127.0.0.1:``port`` until killed, with ``faults`` (see ``Fault``) at first."""
    endpoint = Endpoint(delay=delay, poll_wait=poll_wait)
    endpoint.fault(faults)
    server = await asyncio.start_server(
        lambda r, w: serve_connection(endpoint, r, w), "127.0.0.1", port, backlog=1024
    )
    print(f"ready on {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--poll-wait", type=float, default=1.0, help="longest empty poll, s")
    parser.add_argument("--throttle", type=float, default=0.0, help="share of calls throttled")
    parser.add_argument("--bucket", type=float, default=0.0, help="token bucket size, calls")
    parser.add_argument("--refill", type=float, default=0.0, help="bucket refill, calls/s")
    args = parser.parse_args()
    faults = {"throttle": args.throttle, "bucket": args.bucket, "refill": args.refill}
    asyncio.run(main(args.port, args.delay, args.poll_wait, faults))
