"""code_health: a run says loudly when its codes carry no information (all identical, constant bits)."""

from __future__ import annotations

import numpy as np

from cmhash.experiments.evaluation import code_health
from cmhash.experiments.run import summary_line


def test_collapsed_codes_are_counted_and_warned_about():
    rng = np.random.default_rng(0)
    healthy = rng.choice([-1, 1], size=(200, 16)).astype(np.int8)
    collapsed = np.tile(healthy[:1], (200, 1))
    stats, warnings = code_health({"database_image": collapsed, "database_text": healthy, "query_image": collapsed[:20]})
    assert stats["database_image"] == {"items": 200, "distinct": 1, "constant_bits": 16, "bit_balance": 1.0}
    assert stats["database_text"]["distinct"] == len(np.unique(healthy, axis=0)) and stats["database_text"]["constant_bits"] == 0
    assert stats["database_text"]["bit_balance"] < 0.2
    assert len(warnings) == 2
    assert "all 200 database image codes are identical" in warnings[0] and "all 20 query image codes" in warnings[1]


def test_constant_bits_of_the_database_are_warned_about_and_0_1_codes_are_read():
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, size=(50, 8)).astype(np.uint8)
    bits[:, [2, 5]] = 1  # two bits carry nothing
    stats, warnings = code_health({"database_text": bits, "query_text": bits[:5]})
    assert stats["database_text"]["constant_bits"] == 2
    assert warnings == ["2 of 8 bits are constant over the 50 database text codes (they carry no information)"]
    assert code_health({"database_image": rng.choice([-1, 1], size=(64, 32))})[1] == []


def test_the_console_summary_carries_the_warnings():
    m = {"method": "dgcpn", "dataset": "wiki", "bits": 16, "seed": 0, "seconds": 1.0, "i2t": {"map@50": 0.19}, "t2i": {"map@50": 0.19}}
    assert "WARNING" not in summary_line(m)
    line = summary_line({**m, "warnings": ["collapsed codes: all 5 database image codes are identical"]})
    assert line.splitlines()[1] == "  WARNING: collapsed codes: all 5 database image codes are identical"
