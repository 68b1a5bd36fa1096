"""The claim-check transport, against LocalStack's S3 (a real S3 API)."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
from typing import TYPE_CHECKING, Any

import botocore.awsrequest
import botocore.retries.standard
import pytest

from activities import Activity, Worker
from activities.testing import ActivityEnvironment
from tests import claim_check_workload
from tests.stepfunctions import create_machine, history, start, task_state, wait_for
from transport import CompressedTransport, DecodeError, JSONTransport, S3ClaimCheck
from transport.reference import REFERENCE_KEY, is_reference, resolve
from transport.s3 import S3ClaimCheckError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

    from activities.local import LocalStepFunctions

pytestmark = pytest.mark.integration

ACCOUNT = "000000000000"  # LocalStack's

SHA = "0" * 64  # a well-formed digest


def keys(s3: S3Client, bucket: str) -> list[str]:
    return [stored["Key"] for stored in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def claim_check(s3: S3Client, bucket: str, **options: Any) -> S3ClaimCheck:
    return S3ClaimCheck(bucket, client=lambda: s3, **options)


class TestThreshold:
    def test_a_small_result_passes_through_unchanged(self, s3: S3Client, bucket: str) -> None:
        transport = claim_check(s3, bucket)
        assert transport.serialize_result({"n": 1}) == JSONTransport().serialize_result({"n": 1})
        assert keys(s3, bucket) == []

    def test_just_under_and_just_over(self, s3: S3Client, bucket: str) -> None:
        transport = claim_check(s3, bucket, threshold=1000)
        at = "x" * (1000 - 2)  # its JSON is 1000 bytes: the quotes
        assert len(JSONTransport().encode(at).encode()) == 1000
        assert transport.encode(at) == json.dumps(at)
        assert keys(s3, bucket) == []
        over = transport.encode(at + "x")
        assert is_reference(json.loads(over))
        assert len(keys(s3, bucket)) == 1

    def test_the_threshold_counts_utf8_bytes(self, s3: S3Client, bucket: str) -> None:
        """Step Functions' limit is in bytes: 400 characters of 3 bytes are 1,202 bytes."""
        transport = claim_check(s3, bucket, threshold=1000)
        assert is_reference(json.loads(transport.encode("€" * 400)))

    @pytest.mark.parametrize("threshold", [-1, 256 * 1024 + 1])
    def test_a_threshold_out_of_range_is_refused(self, threshold: int) -> None:
        with pytest.raises(ValueError, match="threshold"):
            S3ClaimCheck("b", threshold=threshold)

    def test_the_default_leaves_room_under_the_limit(self) -> None:
        assert 128 * 1024 <= S3ClaimCheck("b").threshold < 256 * 1024


class TestReference:
    def test_its_format(self, s3: S3Client, bucket: str) -> None:
        transport = claim_check(s3, bucket, prefix="claims/", threshold=10)
        value = {"rows": list(range(100))}
        text = transport.encode(value)
        data = JSONTransport().encode(value).encode()
        digest = hashlib.sha256(data).hexdigest()
        assert json.loads(text) == {
            REFERENCE_KEY: {
                "version": 1,
                "bucket": bucket,
                "key": f"claims/{digest}",
                "size": len(data),
                "sha256": digest,
                "encoding": "json",
            }
        }
        stored = s3.get_object(Bucket=bucket, Key=f"claims/{digest}")
        assert stored["Body"].read() == data
        assert stored["Metadata"] == {"sha256": digest, "encoding": "json"}
        assert stored["ContentType"] == "application/json"

    def test_round_trip_into_run_arguments(self, s3: S3Client, bucket: str) -> None:
        transport = claim_check(s3, bucket, threshold=10)
        big = "y" * 5000

        def run(value: str, count: int) -> tuple[str, int]:
            return value, count

        whole = transport.serialize_arguments(value=big, count=2)
        assert is_reference(json.loads(whole))
        args, kwargs = transport.deserialize_arguments(whole, inspect.signature(run, eval_str=True))
        assert run(*args, **kwargs) == (big, 2)

    def test_a_reference_as_an_arguments_value_is_fetched(self, s3: S3Client, bucket: str) -> None:
        """A state's Parameters may put a reference under a key: {"value.$": "$.result"}."""
        transport = claim_check(s3, bucket, threshold=10)
        reference = json.loads(transport.serialize_result("z" * 5000))

        def run(value: str, label: str) -> tuple[str, str]:
            return value, label

        data = json.dumps({"value": reference, "label": "small"})
        args, kwargs = transport.deserialize_arguments(data, inspect.signature(run, eval_str=True))
        assert run(*args, **kwargs) == ("z" * 5000, "small")

    def test_keys_are_content_addressed(self, s3: S3Client, bucket: str) -> None:
        """A retried task writes no second copy; other bytes, another key."""
        transport = claim_check(s3, bucket, threshold=10)
        first = transport.encode(["a"] * 100)
        with recorded(s3) as sent:
            assert transport.encode(["a"] * 100) == first
        assert [operation for operation, _ in sent] == ["HeadObject"], "found, not sent again"
        assert len(keys(s3, bucket)) == 1
        assert transport.encode(["b"] * 100) != first
        assert len(keys(s3, bucket)) == 2

    def test_an_object_without_its_recorded_digest_is_written_again(
        self, s3: S3Client, bucket: str
    ) -> None:
        """Another tool's copy at the key is not trusted for its length: ours replaces it."""
        transport = claim_check(s3, bucket, threshold=10)
        data = JSONTransport().encode(["f"] * 100).encode()
        key = transport.reference(data)[REFERENCE_KEY]["key"]
        other = b"x" * len(data)  # the same length, other bytes, no metadata
        s3.put_object(Bucket=bucket, Key=key, Body=other)
        reference = transport.encode(["f"] * 100)
        assert json.loads(reference)[REFERENCE_KEY]["key"] == key
        stored = s3.get_object(Bucket=bucket, Key=key)
        assert stored["Body"].read() == data
        assert stored["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert transport.decode(reference) == ["f"] * 100

    def test_a_copy_not_encrypted_as_asked_is_written_again(
        self, s3: S3Client, bucket: str
    ) -> None:
        """SSE-S3 where aws:kms was asked, or another KMS key: the bytes are written again."""
        key_arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/claims"
        transport = claim_check(s3, bucket, threshold=10, sse="aws:kms", kms_key_id=key_arn)
        data = JSONTransport().encode(["e"] * 100).encode()
        fields = transport.reference(data)[REFERENCE_KEY]
        metadata = {"sha256": fields["sha256"], "encoding": "json"}
        copies: list[dict[str, Any]] = [
            {"ServerSideEncryption": "AES256"},
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": f"{key_arn}-other"},
        ]
        for encryption in copies:
            s3.put_object(
                Bucket=bucket, Key=fields["key"], Body=data, Metadata=metadata, **encryption
            )
            with recorded(s3) as sent:
                transport.encode(["e"] * 100)
            assert [operation for operation, _ in sent] == ["HeadObject", "PutObject"]
            stored = s3.head_object(Bucket=bucket, Key=fields["key"])
            assert stored["ServerSideEncryption"] == "aws:kms"
            assert stored["SSEKMSKeyId"] == key_arn
        with recorded(s3) as sent:
            transport.encode(["e"] * 100)
        assert [operation for operation, _ in sent] == ["HeadObject"], "encrypted as asked now"

    def test_map_output_references_are_resolved(self, s3: S3Client, bucket: str) -> None:
        """A Map or Parallel state's output is an array of the references its items made."""
        transport = claim_check(s3, bucket, threshold=10)
        items = [json.loads(transport.encode(f"{n}" * 100)) for n in range(3)]
        assert transport.decode(json.dumps([*items, "small"])) == [
            "0" * 100,
            "1" * 100,
            "2" * 100,
            "small",
        ]
        deeper = {"outer": {"inner": items[0]}}
        assert transport.decode(json.dumps(deeper)) == deeper, "two levels down: left as is"

    def test_a_multipart_round_trip(self, s3: S3Client, bucket: str) -> None:
        """Over 8 MiB: uploaded and read in parts, every part with its settings."""
        transport = claim_check(s3, bucket, threshold=10, sse="AES256")
        value = "m" * (20 * 2**20)
        with recorded(s3) as sent:
            reference = transport.serialize_result(value)
            assert transport.deserialize_result(reference) == value
        operations = [operation for operation, _ in sent]
        assert "CreateMultipartUpload" in operations
        assert operations.count("UploadPart") == 3
        assert operations.count("GetObject") >= 3, "ranged reads"
        key = json.loads(reference)[REFERENCE_KEY]["key"]
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"

    def test_an_object_is_never_overwritten_with_other_bytes(
        self, s3: S3Client, bucket: str
    ) -> None:
        transport = claim_check(s3, bucket, threshold=10)
        data = JSONTransport().encode(["c"] * 100).encode()
        key = transport.reference(data)[REFERENCE_KEY]["key"]
        recorded_digest = {"sha256": hashlib.sha256(b"something else").hexdigest()}
        s3.put_object(Bucket=bucket, Key=key, Body=b"something else", Metadata=recorded_digest)
        with pytest.raises(S3ClaimCheckError, match="not overwritten"):
            transport.encode(["c"] * 100)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"something else"

    def test_compressed_inner_transport(self, s3: S3Client, bucket: str) -> None:
        transport = claim_check(s3, bucket, inner=CompressedTransport(threshold=0), threshold=10)
        value = [{"id": number, "name": "row"} for number in range(2000)]
        reference = json.loads(transport.serialize_result(value))
        assert reference[REFERENCE_KEY]["encoding"] == "zlib+base64"
        assert reference[REFERENCE_KEY]["size"] < len(json.dumps(value)) / 5, "stored compressed"
        assert transport.deserialize_result(json.dumps(reference)) == value
        assert resolve(reference, read_from=f"s3://{bucket}/", client=s3) == value

    def test_resolve_reads_a_reference_with_only_transport_and_boto3(
        self, s3: S3Client, bucket: str
    ) -> None:
        transport = claim_check(s3, bucket, threshold=10)
        reference = json.loads(transport.serialize_result({"text": "w" * 1000}))
        where = f"s3://{bucket}/sfn-activities/"
        assert resolve(reference, read_from=where, client=s3) == {"text": "w" * 1000}
        assert transport.resolve(reference) == {"text": "w" * 1000}
        assert resolve({"not": "a reference"}, read_from=where, client=s3) == {"not": "a reference"}
        assert resolve([1, 2], read_from=where, client=s3) == [1, 2]


class TestSettings:
    def test_sse_s3(self, s3: S3Client, bucket: str) -> None:
        transport = claim_check(s3, bucket, threshold=10, sse="AES256")
        key = json.loads(transport.encode("v" * 100))[REFERENCE_KEY]["key"]
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"

    def test_sse_kms_settings_reach_s3(self, s3: S3Client, bucket: str) -> None:
        sent: list[dict[str, Any]] = []

        def record(params: dict[str, Any], **_: Any) -> None:
            sent.append(dict(params))

        event = "provide-client-params.s3.PutObject"
        s3.meta.events.register(event, record)
        try:
            transport = claim_check(
                s3, bucket, threshold=10, sse="aws:kms", kms_key_id="alias/claims"
            )
            with contextlib.suppress(S3ClaimCheckError):  # LocalStack may check the key
                transport.encode("k" * 100)
        finally:
            s3.meta.events.unregister(event, record)
        assert sent, "no PutObject was sent"
        assert sent[0]["ServerSideEncryption"] == "aws:kms"
        assert sent[0]["SSEKMSKeyId"] == "alias/claims"

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"sse": "DES"}, "sse must be"),
            ({"kms_key_id": "k"}, "kms_key_id needs"),
            ({"sse": "AES256", "kms_key_id": "k"}, "kms_key_id needs"),
        ],
    )
    def test_bad_encryption_settings_are_refused(self, options: dict[str, Any], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            S3ClaimCheck("b", **options)

    def test_every_call_names_the_expected_bucket_owner(self, s3: S3Client, bucket: str) -> None:
        """S3 refuses a bucket of another account (LocalStack does not check it)."""
        transport = claim_check(s3, bucket, threshold=10, expected_bucket_owner=ACCOUNT)
        with recorded(s3) as sent:
            assert transport.decode(transport.encode("o" * 100)) == "o" * 100
        operations = {operation for operation, _ in sent}
        assert {"HeadObject", "PutObject", "GetObject"} <= operations
        assert all(params.get("ExpectedBucketOwner") == ACCOUNT for _, params in sent)

    def test_access_denied_names_the_object(self, s3: S3Client, bucket: str) -> None:
        """What S3 answers a bucket of another account, or a missing permission: 403."""
        transport = claim_check(s3, bucket, threshold=10)
        reference = transport.encode("a" * 100)
        with (
            denied(s3, "GetObject", "HeadObject"),
            pytest.raises(DecodeError, match=f"cannot read s3://{bucket}/.*403"),
        ):
            transport.decode(reference)
        with (
            denied(s3, "PutObject"),
            pytest.raises(S3ClaimCheckError, match=f"cannot store the result at s3://{bucket}/"),
        ):
            transport.encode("b" * 100)

    def test_a_missing_key_answered_403_is_uploaded_all_the_same(
        self, s3: S3Client, bucket: str
    ) -> None:
        """Without s3:ListBucket, S3 answers HeadObject of a missing key with 403."""
        transport = claim_check(s3, bucket, threshold=10)
        with denied(s3, "HeadObject"):
            reference = transport.encode("c" * 100)
        assert transport.decode(reference) == "c" * 100

    def test_the_client_is_made_once_per_process(
        self, s3: S3Client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        made: list[int] = []

        def factory() -> S3Client:
            made.append(1)
            return s3

        transport = S3ClaimCheck("b", client=factory)
        assert transport.client() is transport.client()
        assert len(made) == 1
        monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a task process forked since
        transport.client()
        assert len(made) == 2


@contextlib.contextmanager
def recorded(s3: S3Client) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """The operations and parameters of the calls ``s3`` makes while the block runs."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, dict(params)))

    s3.meta.events.register("provide-client-params.s3", record)
    try:
        yield sent
    finally:
        s3.meta.events.unregister("provide-client-params.s3", record)


@contextlib.contextmanager
def denied(s3: S3Client, *operations: str) -> Iterator[None]:
    """S3 answers ``operations`` with 403 Forbidden while the block runs."""

    def deny(**_: Any) -> tuple[Any, dict[str, Any]]:
        response = botocore.awsrequest.AWSResponse("", 403, {}, None)  # type: ignore[arg-type]
        error = {"Error": {"Code": "403", "Message": "Forbidden"}}
        return response, {**error, "ResponseMetadata": {"HTTPStatusCode": 403}}

    events = [f"before-call.s3.{operation}" for operation in operations]
    for event in events:
        s3.meta.events.register(event, deny)
    try:
        yield
    finally:
        for event in events:
            s3.meta.events.unregister(event, deny)


class TestFailures:
    def test_a_missing_object_names_it(self, s3: S3Client, bucket: str) -> None:
        transport = claim_check(s3, bucket, threshold=10)
        reference = json.loads(transport.encode("m" * 100))
        key = reference[REFERENCE_KEY]["key"]
        s3.delete_object(Bucket=bucket, Key=key)
        with pytest.raises(DecodeError, match=f"cannot read s3://{bucket}/{key}"):
            transport.decode(json.dumps(reference))

    def test_a_wrong_digest_or_size_is_refused(self, s3: S3Client, bucket: str) -> None:
        transport = claim_check(s3, bucket, threshold=10)
        reference = json.loads(transport.encode("d" * 100))
        fields = reference[REFERENCE_KEY]
        s3.put_object(Bucket=bucket, Key=fields["key"], Body=b'"' + b"e" * 100 + b'"')
        with pytest.raises(DecodeError, match="does not match its reference"):
            transport.decode(json.dumps(reference))
        s3.put_object(Bucket=bucket, Key=fields["key"], Body=b'"short"')
        with pytest.raises(DecodeError, match="does not match its reference"):
            transport.decode(json.dumps(reference))
        s3.put_object(Bucket=bucket, Key=fields["key"], Body=b"")
        with pytest.raises(DecodeError, match="does not match its reference"):
            transport.decode(json.dumps(reference))

    def test_a_missing_bucket_fails_the_result_with_a_named_error(self, s3: S3Client) -> None:
        transport = claim_check(s3, "no-such-bucket-here", threshold=10)
        with pytest.raises(S3ClaimCheckError, match="s3://no-such-bucket-here/") as caught:
            transport.encode("r" * 100)
        assert caught.value.error == "transport.S3ClaimCheckError"

    @pytest.mark.parametrize(
        "fields",
        [
            {"version": 2, "bucket": "b", "key": "sfn-activities/k", "size": 1, "sha256": SHA},
            {"version": 1, "bucket": "b"},
            {"version": 1, "bucket": "b", "key": "sfn-activities/k", "size": 1, "sha256": "0"},
            {"version": 1, "bucket": "b", "key": "sfn-activities/k", "size": -1, "sha256": SHA},
            {
                "version": 1,
                "bucket": "b",
                "key": "sfn-activities/k",
                "size": 1,
                "sha256": SHA,
                "encoding": "x",
            },
        ],
    )
    def test_a_bad_reference_is_refused_before_any_download(self, fields: dict[str, Any]) -> None:
        transport = S3ClaimCheck("b", client=_no_client)
        with pytest.raises(DecodeError, match=r"claim-check reference|encoding 'x'"):
            transport.decode(json.dumps({REFERENCE_KEY: fields}))
        with pytest.raises(DecodeError, match=r"claim-check reference|encoding 'x'"):
            transport.decode(json.dumps({"document": {REFERENCE_KEY: fields}}))

    def test_an_object_not_in_its_encoding_names_it(self, s3: S3Client, bucket: str) -> None:
        data = b"not json"
        transport = claim_check(s3, bucket, threshold=10)
        fields = transport.reference(data)[REFERENCE_KEY]
        s3.put_object(Bucket=bucket, Key=fields["key"], Body=data)
        with pytest.raises(DecodeError, match=f"s3://{bucket}/.* is not valid in its encoding"):
            transport.decode(json.dumps({REFERENCE_KEY: fields}))
        with pytest.raises(DecodeError, match=f"s3://{bucket}/.* is not valid in its encoding"):
            resolve({REFERENCE_KEY: fields}, read_from=f"s3://{bucket}", client=s3)

    def test_a_client_that_cannot_be_made_names_the_object(self, bucket: str) -> None:
        def broken() -> S3Client:
            msg = "no credentials here"
            raise RuntimeError(msg)

        transport = S3ClaimCheck(bucket, client=broken, threshold=10)
        with pytest.raises(S3ClaimCheckError, match=f"s3://{bucket}/.*no credentials here"):
            transport.encode("n" * 100)
        fields = transport.reference(b'"x"')[REFERENCE_KEY]
        with pytest.raises(DecodeError, match=f"s3://{bucket}/.*no credentials here"):
            transport.decode(json.dumps({REFERENCE_KEY: fields}))


def _no_client() -> S3Client:
    pytest.fail("S3 was called")


class TestRetries:
    def test_throttling_is_retried(
        self,
        local_sfn: LocalStepFunctions,
        bucket: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """S3 answers 503 SlowDown six times: the transport's own client retries past it."""
        for name, value in local_sfn.environment().items():
            monkeypatch.setenv(name, value)
        # Only S3 is pointed at LocalStack, as boto3's chain allows (AWS_ENDPOINT_URL_S3).
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", local_sfn.endpoint_url)
        # botocore's backoff would take up to a minute: no waiting between attempts here.
        monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", _now)
        transport = S3ClaimCheck(bucket, threshold=10)  # boto3's chain: its own client
        reference = transport.encode("t" * 100)
        answered: list[int] = []

        def slow_down(request: Any, **_: Any) -> Any:
            if request.method != "GET" or len(answered) >= 6:
                return None
            answered.append(503)
            body = b"<Error><Code>SlowDown</Code><Message>Reduce your rate.</Message></Error>"
            return botocore.awsrequest.AWSResponse(request.url, 503, {}, _Raw(body))

        client = transport.client()
        client.meta.events.register("before-send.s3", slow_down)
        try:
            assert transport.decode(reference) == "t" * 100
        finally:
            client.meta.events.unregister("before-send.s3", slow_down)
        assert answered == [503] * 6, "all six answered: more than botocore's default retries"


def _now(*_: Any) -> float:
    return 0.0


class _Raw:
    """The raw body of a made-up HTTP response."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body

    def read(self, *_: Any) -> bytes:
        body, self._body = self._body, b""
        return body


class Big(Activity):
    name = "it-Big"

    def run(self, size: int) -> str:
        return "b" * size


class Length(Activity):
    name = "it-Length"

    def run(self, value: str) -> int:
        return len(value)


class TestInActivities:
    def test_failures_reach_step_functions_by_name(self, s3: S3Client, bucket: str) -> None:
        env = ActivityEnvironment()
        Big.transport = claim_check(s3, "no-such-bucket-here", threshold=10)
        failed = env.run(Big, json.dumps({"size": 100}))
        assert failed.error == "transport.S3ClaimCheckError"
        assert "s3://no-such-bucket-here/" in failed.cause

        Length.transport = claim_check(s3, bucket, threshold=10)
        reference = json.loads(Length.transport.serialize_arguments(value="q" * 100))
        s3.delete_object(Bucket=bucket, Key=reference[REFERENCE_KEY]["key"])
        missing = env.run(Length, json.dumps(reference))
        assert missing.error == "activities.InvalidInput"
        assert f"s3://{bucket}/" in missing.cause


def test_five_megabytes_through_a_state_machine(
    local_sfn: LocalStepFunctions, sfn: SFNClient, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Produce returns 5 MB, Measure gets it: the execution's own data stays small."""
    for name, value in local_sfn.environment().items():
        monkeypatch.setenv(name, value)
    s3.create_bucket(Bucket=claim_check_workload.BUCKET)
    produce, measure = claim_check_workload.Produce, claim_check_workload.Measure
    worker = Worker([produce, measure], processes=2, client=local_sfn.client_factory())
    worker.start()
    try:
        arns = {
            activity: f"arn:aws:states:us-east-1:{ACCOUNT}:activity:{activity.name}"
            for activity in (produce, measure)
        }
        machine = create_machine(
            sfn,
            {
                "Produce": task_state(arns[produce], Next="Measure"),
                "Measure": task_state(arns[measure]),
            },
            "Produce",
        )
        execution = start(sfn, machine, {"size": 5 * 2**20})
        ended = wait_for(sfn, execution)
    finally:
        worker.stop(timeout=120)
    assert ended["status"] == "SUCCEEDED", ended
    assert json.loads(ended["output"]) == 5 * 2**20
    passed = [
        event["activitySucceededEventDetails"]["output"]
        for event in history(sfn, execution)
        if event["type"] == "ActivitySucceeded"
    ]
    assert len(passed) == 2
    assert is_reference(json.loads(passed[0]))
    assert all(len(output.encode()) < 1024 for output in passed)
    stored = s3.list_objects_v2(Bucket=claim_check_workload.BUCKET, Prefix="tests/")
    assert [item["Size"] for item in stored.get("Contents", [])] == [5 * 2**20 + 2]
