"""Activities that pass large data through S3 with the claim-check transport.

The bucket is fixed (LocalStack is fresh for each test session); S3 is reached by
boto3's usual chain, so a test points ``AWS_ENDPOINT_URL_S3`` at LocalStack.
"""

from __future__ import annotations

from activities import Activity
from transport import S3ClaimCheck

BUCKET = "sfn-activities-claim-check-tests"


class Produce(Activity):
    """Returns ``size`` characters: over the threshold, a reference travels instead."""

    name = "it-Produce"
    transport = S3ClaimCheck(BUCKET, prefix="tests/")

    def run(self, size: int) -> str:
        return "x" * size


class Measure(Activity):
    """Receives what Produce returned, fetched from S3 before run(); returns its length."""

    name = "it-Measure"
    transport = S3ClaimCheck(BUCKET, prefix="tests/")

    def run(self, value: str) -> int:
        return len(value)
