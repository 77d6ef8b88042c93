"""The benchmark harness itself: every case module loads, names are unique,
and the recorded results file is valid and names the peers it measured."""
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import harness  # noqa: E402


def test_cases_load_with_unique_names():
    cases = harness.load_cases()
    names = [c.name for c in cases]
    assert len(names) == len(set(names))
    for c in cases:
        assert c.tools, c.name
        assert c.baseline in {t.name for t in c.tools}, c.name


def test_results_file_is_valid():
    with open(os.path.join(ROOT, "benchmarks", "results", "latest.json")) as f:
        results = json.load(f)
    known = {c.name for c in harness.load_cases()}
    assert results["cases"]
    for name, case in results["cases"].items():
        assert name in known, name
        for row in case["rows"]:
            assert row["status"] in {"ok", "skipped", "error"}, (name, row)
            if row["status"] == "ok":
                assert row["median"] > 0
