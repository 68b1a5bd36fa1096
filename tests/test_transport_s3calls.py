"""Reading an object exactly: ranged parts of one version, bodies cut short read again."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from transport import DecodeError
from transport import _s3calls as s3calls
from transport.reference import Where


class FakeS3:
    """get_object over bytes, with the faults of a server: ranges ignored, bodies cut."""

    def __init__(self, data: bytes, *, ignore_range_after: int | None = None) -> None:
        self.data = data
        self.ignore_range_after = ignore_range_after
        self.cut_next = 0  # bodies still to cut short
        self.calls: list[dict[str, Any]] = []

    def get_object(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        first, last = (int(n) for n in params["Range"].removeprefix("bytes=").split("-"))
        if self.ignore_range_after is not None and first >= self.ignore_range_after:
            body = self.data
            answer: dict[str, Any] = {"ContentLength": len(body)}
        else:
            body = self.data[first : last + 1]
            answer = {"ContentRange": f"bytes {first}-{last}/{len(self.data)}"}
        if self.cut_next:
            self.cut_next -= 1
            body = body[: len(body) // 2]
        return {**answer, "ETag": '"e"', "Body": Body(body)}


class Body:
    def __init__(self, data: bytes) -> None:
        self.data, self.closed = data, False

    def read(self, amount: int) -> bytes:
        chunk, self.data = self.data[:amount], self.data[amount:]
        return chunk

    def close(self) -> None:
        self.closed = True


def where_of(data: bytes) -> Where:
    return Where("claims", "sfn-activities/k", len(data), hashlib.sha256(data).hexdigest())


class TestParts:
    @pytest.fixture(autouse=True)
    def small_parts(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(s3calls, "PART_SIZE", 10)
        monkeypatch.setattr(s3calls, "READ_CHUNK", 4)

    @pytest.mark.parametrize("size", [1, 9, 10, 11, 20, 21, 35])
    def test_every_part_is_read_exactly(self, size: int) -> None:
        data = bytes(range(size))
        s3 = FakeS3(data)
        view = s3calls.fetch(s3, where_of(data), expected_bucket_owner=None)  # type: ignore[arg-type]
        assert bytes(view) == data
        view.release()
        assert all("IfMatch" in call for call in s3.calls[1:]), "later parts: the same object"

    def test_a_later_part_answered_whole_is_refused_by_its_range(self) -> None:
        data = bytes(range(25))
        s3 = FakeS3(data, ignore_range_after=10)
        with pytest.raises(DecodeError, match="asked for bytes 10-19/25, S3 answered None"):
            s3calls.fetch(s3, where_of(data), expected_bucket_owner=None)  # type: ignore[arg-type]

    def test_a_first_body_cut_short_is_read_again_from_the_same_object(self) -> None:
        data = bytes(range(25))
        s3 = FakeS3(data)
        s3.cut_next = 1
        view = s3calls.fetch(s3, where_of(data), expected_bucket_owner=None)  # type: ignore[arg-type]
        assert bytes(view) == data
        view.release()
        assert s3.calls[1]["Range"] == "bytes=0-9"
        assert s3.calls[1]["IfMatch"] == '"e"'
