"""Reading one number out of a service's Prometheus text (what checks and measurements rely on)."""

from __future__ import annotations

import pytest

from pushctl.control import sum_samples
from pushctl.errors import TargetUnreachable

ACCESS = """\
# HELP pushstack_access_pushes_total Pushes accepted, by path.
# TYPE pushstack_access_pushes_total counter
pushstack_access_pushes_total{path="direct"} 900.0
pushstack_access_pushes_total{path="buffer"} 120.0
pushstack_access_pushes_created{path="direct"} 1.7e+09
pushstack_access_pushes_created{path="buffer"} 1.7e+09
# HELP pushstack_access_rejected_total Pushes no path would take.
# TYPE pushstack_access_rejected_total counter
pushstack_access_rejected_total 0.0
# HELP pushstack_access_throttle_engaged 1 while the direct path is limited.
# TYPE pushstack_access_throttle_engaged gauge
pushstack_access_throttle_engaged 1.0
"""


def test_a_label_picks_one_path_and_no_label_sums_them() -> None:
    assert sum_samples(ACCESS, "pushstack_access_pushes_total", {"path": "buffer"}) == 120.0
    assert sum_samples(ACCESS, "pushstack_access_pushes_total") == 1020.0


def test_gauges_zero_counters_and_absent_metrics() -> None:
    assert sum_samples(ACCESS, "pushstack_access_throttle_engaged") == 1.0
    assert sum_samples(ACCESS, "pushstack_access_rejected_total") == 0.0
    assert sum_samples(ACCESS, "pushstack_access_pushes") is None  # the family name is not a sample
    assert sum_samples(ACCESS, "pushstack_access_pushes_total", {"path": "carrier-pigeon"}) is None


def test_unreadable_text_is_a_target_problem_not_a_traceback() -> None:
    with pytest.raises(TargetUnreachable, match="pushstack_x"):
        sum_samples('pushstack_x{path="a} 1\n', "pushstack_x")
