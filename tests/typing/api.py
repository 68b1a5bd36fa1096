"""The public API as a user writes it: checked by mypy --strict, never run."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from typing import TYPE_CHECKING

from activities import (
    Activity,
    ActivityClient,
    ActivityError,
    Failure,
    Outcome,
    Success,
    Task,
    Worker,
    failure_from_exception,
    make_client,
)
from activities.testing import ActivityEnvironment, TaskReport
from transport import CompressedTransport, JSONTransport, Transport

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclasses.dataclass
class Order:
    id: int
    placed: dt.datetime


class NotFound(ActivityError):
    error = "NotFound"


class Ship(Activity):
    name = "ship-order"
    transport = CompressedTransport(threshold=1024)

    def run(self, order: Order, *, express: bool = False) -> Iterator[None]:
        yield
        self.heartbeat()
        task: Task = self.task
        if not task.token:
            raise NotFound(f"order {order.id}")


class Echo(Activity):
    def run(self, value: object) -> object:
        return value


def embed() -> Outcome | None:
    client = ActivityClient(make_client(region_name="us-east-1"), worker_name="me")
    arn: str = client.create_activity(Echo.name, tags={"team": "data"})
    task = client.poll(arn)
    if task is None:
        return None
    client.send_heartbeat(task.token)
    client.send_success(task.token, {"ok": True}, transport=JSONTransport())
    client.send_failure(task.token, ValueError("bad"))
    client.send_failure(task.token, "Custom.Error", "details")
    return client.process(Echo(), task)


def test_an_activity() -> None:
    report: TaskReport = ActivityEnvironment(cancel_after_heartbeats=1).run(Echo, "[1]")
    outcome: Outcome = report.outcome
    if isinstance(outcome, Success):
        text: str = outcome.output
    failure: Failure = failure_from_exception(ValueError(text))
    assert failure.error


def custom_transport() -> Transport:
    caller_side = JSONTransport()
    data: str = caller_side.serialize_arguments(order=Order(1, dt.datetime.now(dt.UTC)))
    order: Order = caller_side.deserialize_result(data, Order)
    assert order
    return caller_side


def serve() -> int:
    # Processes each make their client with a picklable factory; threads may share one.
    factory = functools.partial(make_client, endpoint_url="http://127.0.0.1:4566")
    Worker([Echo, Ship], processes=2, client=factory, shutdown_grace=10).start()
    threaded = Worker([Echo], threads=8, client=make_client(), pollers=4)
    stopped: bool = threaded.stop(timeout=5)
    assert stopped
    return Worker([Echo], heartbeat_intervals={"Echo": None}).run()
