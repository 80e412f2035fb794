"""benchmarks/bench_grootv_cpu.py: its table has a ratio wherever it measured one, and no NaN."""

import importlib.util
import json
import os

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "bench_grootv_cpu.py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_grootv_cpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_mode_measures_the_peer(bench):
    """--quick included: the training row of GrootV-T gets its ConvNeXt-T ratio too."""
    for model, mode in bench.PLAN:
        assert ("convnext_tiny", mode) in bench.PLAN, (model, mode)


def test_table_shows_ratios_and_a_dash_where_the_peer_is_missing(bench):
    row = dict(images_per_s=1.0, peak_mb=1.0)
    rows = [dict(model="convnext_tiny", mode="inference", seconds=0.2, **row),
            dict(model="grootv_tiny", mode="inference", seconds=0.3, **row),
            dict(model="grootv_tiny", mode="training", seconds=0.9, **row)]
    lines = bench.table(rows)
    assert len(lines) == 2 + len(rows) and not any("nan" in line.lower() for line in lines)
    assert rows[1]["vs_convnext_tiny"] == pytest.approx(1.5) and rows[2]["vs_convnext_tiny"] is None
    assert lines[3].split()[-2] == "1.50" and lines[4].split()[-2] == "-"
    json.dumps(rows, allow_nan=False)  # the --json file is valid JSON
