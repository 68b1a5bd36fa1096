"""The rules a claim-check reader holds references to, before any S3 call."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import pytest

from transport import DecodeError, S3ClaimCheck
from transport.reference import DEFAULT_MAX_SIZE, REFERENCE_KEY, ReadRules, Where, resolve
from transport.s3 import S3ClaimCheckError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SHA = hashlib.sha256(b'"x"').hexdigest()


def where(bucket: str, key: str, size: int = 3) -> Where:
    return Where(bucket, key, size, SHA)


def reference(bucket: str, key: str, size: int = 3) -> dict[str, Any]:
    fields = {"version": 1, "bucket": bucket, "key": key, "size": size, "sha256": SHA}
    return {REFERENCE_KEY: fields}


def no_client() -> S3Client:
    pytest.fail("S3 was called")


class TestReadRules:
    def test_a_prefix_is_a_start_of_the_key_in_that_bucket_only(self) -> None:
        rules = ReadRules(["s3://claims/sfn-activities/"])
        assert rules.allows("claims", "sfn-activities/abc")
        assert not rules.allows("claims", "other/abc")
        assert not rules.allows("claims", "sfn-activities")
        assert not rules.allows("claims-2", "sfn-activities/abc")
        assert not rules.allows("secret", "sfn-activities/abc")

    @pytest.mark.parametrize("location", ["s3://claims", "s3://claims/"])
    def test_a_bucket_alone_is_the_whole_bucket(self, location: str) -> None:
        rules = ReadRules([location])
        assert rules.allows("claims", "anything/at/all")
        assert not rules.allows("other", "anything")

    @pytest.mark.parametrize(
        "key", ["sfn-activities/../secret", "sfn-activities/./x", "sfn-activities/a/../../b"]
    )
    def test_dot_segments_are_refused(self, key: str) -> None:
        """A proxy or an S3-compatible server may resolve them out of the prefix."""
        assert not ReadRules(["s3://claims/sfn-activities/"]).allows("claims", key)

    def test_several_locations(self) -> None:
        rules = ReadRules(["s3://a/x/", "s3://b/y/"])
        assert rules.allows("a", "x/1")
        assert rules.allows("b", "y/1")
        assert not rules.allows("a", "y/1")

    @pytest.mark.parametrize(
        ("locations", "match"),
        [
            ([], "at least one location"),
            (["claims/prefix"], "s3://bucket/prefix"),
            (["s3:///prefix"], "names a bucket"),
            (["https://claims.s3.amazonaws.com/x"], "s3://bucket/prefix"),
        ],
    )
    def test_bad_locations_are_refused(self, locations: list[str], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            ReadRules(locations)

    @pytest.mark.parametrize("max_size", [-1, 1.5])
    def test_a_bad_max_size_is_refused(self, max_size: Any) -> None:
        with pytest.raises(ValueError, match="max_size"):
            ReadRules(["s3://claims/"], max_size=max_size)

    def test_the_check_names_the_rule(self) -> None:
        rules = ReadRules(["s3://claims/p/"], max_size=100)
        with pytest.raises(DecodeError, match=r"read only from s3://claims/p/ \(add locations"):
            rules.check(where("secret", "payroll.json"))
        with pytest.raises(DecodeError, match="101 bytes is over max_size=100"):
            rules.check(where("claims", "p/big", size=101))
        rules.check(where("claims", "p/fits", size=100))

    def test_a_long_key_is_cut_short_in_the_cause(self) -> None:
        with pytest.raises(DecodeError) as caught:
            ReadRules(["s3://claims/"]).check(where("secret", "k" * 100_000))
        assert len(str(caught.value)) < 500

    def test_the_default_bound_suits_payloads_moved_out_of_step_functions(self) -> None:
        assert 16 * 2**20 <= DEFAULT_MAX_SIZE <= 128 * 2**20


class TestWhere:
    @pytest.mark.parametrize(
        "change",
        [{"size": -1}, {"sha256": "0"}, {"sha256": SHA.upper()}, {"size": True}, {"key": ""}],
    )
    def test_malformed_fields_are_refused(self, change: dict[str, Any]) -> None:
        fields = {**reference("claims", "p/k")[REFERENCE_KEY], **change}
        with pytest.raises(DecodeError, match="claim-check reference needs"):
            Where.of(fields)


class TestResolve:
    def test_it_needs_to_be_told_where_to_read(self) -> None:
        with pytest.raises(TypeError, match="read_from"):
            resolve(reference("claims", "p/k"))  # type: ignore[call-arg]

    def test_a_reference_elsewhere_is_refused_before_any_call(self) -> None:
        with pytest.raises(DecodeError, match="refused"):
            resolve(reference("secret", "payroll.json"), read_from="s3://claims/p/", client=None)
        value = {"document": reference("secret", "payroll.json")}
        with pytest.raises(DecodeError, match="refused"):
            resolve(value, read_from=["s3://claims/p/"], max_size=10)

    def test_a_stated_size_over_max_size_is_refused_before_any_call(self) -> None:
        with pytest.raises(DecodeError, match="over max_size=10"):
            resolve(reference("claims", "p/k", size=11), read_from="s3://claims/p/", max_size=10)

    def test_values_without_references_need_no_s3(self) -> None:
        assert resolve({"a": [1, 2]}, read_from="s3://claims/") == {"a": [1, 2]}


class TestS3ClaimCheck:
    def test_its_own_prefix_is_where_it_reads(self) -> None:
        transport = S3ClaimCheck("claims", prefix="mine/", client=no_client)
        with pytest.raises(DecodeError, match=r"read only from s3://claims/mine/ \("):
            transport.decode(json.dumps(reference("claims", "other/k")))
        with pytest.raises(DecodeError, match="refused"):
            transport.resolve([reference("secret", "mine/k")])

    def test_read_from_adds_to_its_own(self) -> None:
        transport = S3ClaimCheck("claims", read_from=["s3://shared/in/"], client=no_client)
        assert transport.read_from == ("s3://shared/in/",)
        assert transport.rules.allows("claims", "sfn-activities/k")
        assert transport.rules.allows("shared", "in/k")
        assert not transport.rules.allows("shared", "out/k")
        assert "read_from=['s3://shared/in/']" in repr(transport)

    def test_read_from_is_a_list(self) -> None:
        with pytest.raises(TypeError, match="list of locations"):
            S3ClaimCheck("claims", read_from="s3://shared/in/")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            S3ClaimCheck("claims", read_from=["shared/in/"])

    def test_a_result_over_max_size_is_refused_before_any_call(self) -> None:
        transport = S3ClaimCheck("claims", threshold=10, max_size=100, client=no_client)
        assert transport.max_size == 100
        with pytest.raises(S3ClaimCheckError, match="over max_size=100") as caught:
            transport.encode("x" * 200)
        assert caught.value.error == "transport.S3ClaimCheckError"


class TestTogether:
    """max_size bounds what one input's references make a process read, all of them."""

    def test_references_that_fit_each_but_not_together_are_refused_before_any_call(self) -> None:
        transport = S3ClaimCheck("claims", max_size=100, client=no_client)
        each = reference("claims", "sfn-activities/k", size=60)
        with pytest.raises(DecodeError, match="2 claim-check references refused: 120 bytes"):
            transport.decode(json.dumps([each, each]))
        with pytest.raises(DecodeError, match="in all is over max_size=100"):
            transport.resolve({"a": each, "b": each})
        with pytest.raises(DecodeError, match="in all"):
            resolve([each, each], read_from="s3://claims/", max_size=100)

    def test_a_malformed_reference_among_good_ones_is_refused_first(self) -> None:
        transport = S3ClaimCheck("claims", client=no_client)
        good = reference("claims", "sfn-activities/k")
        bad = {REFERENCE_KEY: {"version": 1, "bucket": "claims"}}
        with pytest.raises(DecodeError, match="needs version"):
            transport.decode(json.dumps([good, bad]))


ACCESS_POINT = "arn:aws:s3:us-east-1:123456789012:accesspoint/claims-ap"


class TestAccessPoints:
    def test_a_transport_on_an_access_point_reads_its_own_references(self) -> None:
        transport = S3ClaimCheck(ACCESS_POINT, client=no_client)
        assert transport.rules.allows(ACCESS_POINT, "sfn-activities/k")
        assert not transport.rules.allows(ACCESS_POINT, "other/k")
        assert not transport.rules.allows("claims-ap", "sfn-activities/k")

    def test_read_from_takes_an_access_points_arn(self) -> None:
        rules = ReadRules([f"{ACCESS_POINT}/shared/"])
        assert rules.allows(ACCESS_POINT, "shared/k")
        assert not rules.allows(ACCESS_POINT, "other/k")
        transport = S3ClaimCheck("claims", read_from=[f"{ACCESS_POINT}/shared/"])
        assert transport.read_from == (f"{ACCESS_POINT}/shared/",)

    @pytest.mark.parametrize(
        "location",
        [
            "arn:aws:s3:::my-bucket/prefix",  # a bucket's ARN: use s3://
            "arn:aws:s3:us-east-1:123456789012:accesspoint/",
            "arn:aws:iam::123456789012:role/x",
        ],
    )
    def test_other_arns_are_refused(self, location: str) -> None:
        with pytest.raises(ValueError, match="access point"):
            ReadRules([location])
