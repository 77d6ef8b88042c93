"""The shared C pieces, tested through the extension: hash table, varints, SCC."""
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


def test_graph_scc_known_components():
    # 0 -> 1 -> 2 -> 0 and 2 -> 3 <-> 4; 5 alone; 6 with a self loop.
    edges = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 3), (6, 6)]
    comp, order, ncomp = _core._graph_scc(7, edges)
    # Tarjan completes {3, 4} first (it is reached from {0, 1, 2}), then the rest in index order.
    assert comp == [1, 1, 1, 0, 0, 2, 3]
    assert ncomp == 4
    assert order == [4, 3, 2, 1, 0, 5, 6]


def test_graph_scc_deep_chain_is_one_component():
    # a 200k-long ring: a recursive Tarjan would overflow the C stack
    n = 200_000
    comp, order, ncomp = _core._graph_scc(n, [(i, (i + 1) % n) for i in range(n)])
    assert ncomp == 1 and set(comp) == {0}
    assert order[-1] == 0 and len(set(order)) == n


def test_graph_scc_rejects_out_of_range_edge():
    with pytest.raises(heaptrail.HeaptrailError, match="out of range"):
        _core._graph_scc(2, [(0, 2)])


def test_prefault_helper_faults_in_ahead_and_changes_nothing():
    """prefault.h: a helper thread faults in the pages a writer is about to fill (an eighth plus
    1 MiB ahead of it), leaves the pages past that alone, and changes no byte the writer wrote,
    also while the block moves past its reservation under the helper's lock."""
    r = _core._prefault_check(64)
    if r is None:
        pytest.skip("no helper here: the arrays are malloc blocks (ASan) or this is not Linux")
    assert r["bad"] == 0
    assert r["ahead"] == r["window_pages"] == (16 * 2**20 // 8 + 2**20 - 2**16) // r["page"]
    assert r["beyond"] == 0
