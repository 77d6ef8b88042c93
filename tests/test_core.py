"""The shared C pieces, tested through the extension: hash table and varints."""
import pytest

import heaptrail
from heaptrail import _core


@pytest.mark.parametrize("with_values", [True, False])
@pytest.mark.parametrize("n", [1, 17, 1000, 200_000])
def test_hashtable_agrees_with_reference(n, with_values):
    assert _core._hashtable_check(n, with_values) == 0


def test_varint_known_bytes():
    assert _core._varint_encode([0, 1, 127, 128, 300], False) == bytes.fromhex("00017f8001ac02")
    assert _core._varint_encode([2**64 - 1], False) == b"\xff" * 9 + b"\x01"
    assert _core._varint_encode([0, -1, 1, -2, -3], True) == bytes([0, 1, 2, 3, 5])


@pytest.mark.parametrize("values", [[0, 5, 2**32, 2**63, 2**64 - 1], list(range(0, 10**6, 9973))])
def test_varint_round_trip(values):
    assert _core._varint_decode(_core._varint_encode(values, False), False) == values
    signed = [v - 2**63 for v in values]
    assert _core._varint_decode(_core._varint_encode(signed, True), True) == signed


@pytest.mark.parametrize("data, why", [
    (b"\x80", "truncated"),
    (b"\xac", "truncated"),
    (b"\xff" * 9 + b"\x02", "overflows"),
    (b"\xff" * 10 + b"\x01", "overflows"),
])
def test_varint_rejects_bad_input(data, why):
    with pytest.raises(heaptrail.HeaptrailError, match=why):
        _core._varint_decode(data, False)


def test_version_and_error_type():
    assert heaptrail.__version__.count(".") == 2
    assert issubclass(heaptrail.HeaptrailError, Exception)
