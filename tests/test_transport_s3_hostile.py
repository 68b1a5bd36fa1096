"""Claim checks against hostile input: references an execution's input may hold.

Whoever starts an execution writes its references; a reader follows only its own bucket
and prefix, and ``read_from``'s locations, up to ``max_size``. Against LocalStack's S3,
with the helpers of ``tests/test_transport_s3.py``.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.test_transport_s3 import SHA, claim_check, recorded
from transport import DecodeError
from transport.reference import REFERENCE_KEY, resolve

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_s3 import S3Client


pytestmark = pytest.mark.integration


class TestHostileReferences:
    """Whoever starts an execution writes its references: a reader follows only its own."""

    @pytest.fixture
    def secret(self, s3: S3Client, bucket: str) -> Iterator[tuple[str, bytes]]:
        """Another bucket the worker's role can read, holding an object not meant for tasks."""
        name = f"{bucket[:40]}-secret"
        s3.create_bucket(Bucket=name)
        data = b'{"payroll": [1000, 2000, 3000]}'
        s3.put_object(Bucket=name, Key="payroll.json", Body=data)
        s3.put_object(Bucket=name, Key="shared/claims/doc", Body=b'"shared"')
        yield name, data
        for key in ("payroll.json", "shared/claims/doc"):
            s3.delete_object(Bucket=name, Key=key)
        s3.delete_bucket(Bucket=name)

    def test_a_reference_elsewhere_is_refused_before_any_call_and_says_nothing(
        self, s3: S3Client, bucket: str, secret: tuple[str, bytes]
    ) -> None:
        """Wrong size, wrong digest, right both: the same refusal, and S3 is never asked."""
        name, data = secret
        transport = claim_check(s3, bucket, threshold=10)
        right = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        guesses = [{**right, "size": len(data) + 7}, {**right, "sha256": SHA}, right]
        causes = []
        with recorded(s3) as sent:
            for guess in guesses:
                fields = {"version": 1, "bucket": name, "key": "payroll.json", **guess}
                with pytest.raises(DecodeError, match="refused") as caught:
                    transport.decode(json.dumps({"value": {REFERENCE_KEY: fields}}))
                causes.append(str(caught.value))
        assert sent == [], "no S3 call for a reference outside the transport's own prefix"
        assert len(set(causes)) == 1, "the cause does not depend on what is there"
        assert str(len(data)) not in causes[0]
        assert f"read only from s3://{bucket}/sfn-activities/" in causes[0]
        assert "read_from" in causes[0]

    def test_another_key_of_its_own_bucket_is_refused(self, s3: S3Client, bucket: str) -> None:
        transport = claim_check(s3, bucket, threshold=10)
        s3.put_object(Bucket=bucket, Key="private.json", Body=b'"p"')
        fields = {"version": 1, "bucket": bucket, "key": "private.json", "size": 3}
        fields["sha256"] = hashlib.sha256(b'"p"').hexdigest()
        for key in ("private.json", "sfn-activities/../private.json"):
            with pytest.raises(DecodeError, match="refused"):
                transport.decode(json.dumps({REFERENCE_KEY: {**fields, "key": key}}))

    def test_read_from_adds_a_location(
        self, s3: S3Client, bucket: str, secret: tuple[str, bytes]
    ) -> None:
        name, data = secret
        transport = claim_check(s3, bucket, threshold=10, read_from=[f"s3://{name}/shared/"])
        shared = {"version": 1, "bucket": name, "key": "shared/claims/doc", "size": 8}
        shared["sha256"] = hashlib.sha256(b'"shared"').hexdigest()
        assert transport.decode(json.dumps({REFERENCE_KEY: shared})) == "shared"
        payroll = {**shared, "key": "payroll.json", "size": len(data)}
        payroll["sha256"] = hashlib.sha256(data).hexdigest()
        with pytest.raises(DecodeError, match=f"read only from s3://{bucket}/sfn-activities/, "):
            transport.decode(json.dumps({REFERENCE_KEY: payroll}))
        assert resolve({REFERENCE_KEY: shared}, read_from=f"s3://{name}/shared/", client=s3) == (
            "shared"
        )
        with pytest.raises(DecodeError, match="refused"):
            resolve({REFERENCE_KEY: payroll}, read_from=f"s3://{name}/shared/", client=s3)

    def test_a_stated_size_over_max_size_is_refused_before_any_call(
        self, s3: S3Client, bucket: str
    ) -> None:
        transport = claim_check(s3, bucket, threshold=10, max_size=1000)
        fields = transport.reference(b"x" * 1001)[REFERENCE_KEY]
        with recorded(s3) as sent, pytest.raises(DecodeError, match=r"over max_size=1000"):
            transport.decode(json.dumps({REFERENCE_KEY: fields}))
        assert sent == []

    def test_a_mismatch_is_logged_at_debug_not_told(
        self, s3: S3Client, bucket: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        transport = claim_check(s3, bucket, threshold=10)
        fields = json.loads(transport.encode("d" * 100))[REFERENCE_KEY]
        other = b'"' + b"e" * 100 + b'"'
        s3.put_object(Bucket=bucket, Key=fields["key"], Body=other)
        found = hashlib.sha256(other).hexdigest()
        with (
            caplog.at_level("DEBUG", logger="transport.reference"),
            pytest.raises(DecodeError) as caught,
        ):
            transport.decode(json.dumps({REFERENCE_KEY: fields}))
        assert found not in str(caught.value)
        assert found in caplog.text

    def test_only_the_stated_bytes_are_read_of_a_larger_object(
        self, s3: S3Client, bucket: str
    ) -> None:
        """An object grown past its reference: one ranged read of the stated size, refused."""
        transport = claim_check(s3, bucket, threshold=10)
        fields = json.loads(transport.encode("g" * 100))[REFERENCE_KEY]
        s3.put_object(Bucket=bucket, Key=fields["key"], Body=b'"' + b"g" * (2 * 2**20) + b'"')
        with recorded(s3) as sent, pytest.raises(DecodeError, match="does not match"):
            transport.decode(json.dumps({REFERENCE_KEY: fields}))
        assert [(operation, params.get("Range")) for operation, params in sent] == [
            ("GetObject", f"bytes=0-{fields['size'] - 1}")
        ]

    def test_an_object_replaced_while_it_is_read_is_refused(
        self, s3: S3Client, bucket: str
    ) -> None:
        """Parts after the first are read from the same version (IfMatch), never mixed."""
        transport = claim_check(s3, bucket, threshold=10)
        value = "r" * (9 * 2**20)  # two parts
        fields = json.loads(transport.encode(value))[REFERENCE_KEY]
        replaced: list[str] = []

        def replace(params: dict[str, Any], **_: Any) -> None:
            if not replaced and not params.get("Range", "bytes=0-").startswith("bytes=0-"):
                replaced.append(params["Range"])
                body = b'"' + b"R" * (fields["size"] - 2) + b'"'
                s3.put_object(Bucket=bucket, Key=fields["key"], Body=body)

        event = "before-parameter-build.s3.GetObject"
        s3.meta.events.register(event, replace)
        try:
            with pytest.raises(DecodeError, match="changed while it was read"):
                transport.decode(json.dumps({REFERENCE_KEY: fields}))
        finally:
            s3.meta.events.unregister(event, replace)
        assert replaced, "the object was replaced between the parts"
