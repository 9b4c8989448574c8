"""segdeploy.bench.measure and .memory: order of calls, statistics, splits, memory probes (no timed assertions)."""

from __future__ import annotations

import numpy as np
import pytest
from bench_helpers import RecordingRunner

from segdeploy.bench.measure import MeasureOptions, _split_from, latency_stats, measure, read_split, rotation
from segdeploy.bench.memory import PeakSampler, rss_bytes
from segdeploy.errors import UsageError


def test_rotation_starts_each_round_one_runner_later():
    assert [rotation(3, i) for i in range(4)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]
    assert rotation(1, 7) == [0]


def test_measure_loads_each_runner_alone_then_interleaves_rotating():
    log: list = []
    runners = [RecordingRunner(f"r{i}", log, seed=i) for i in range(3)]
    shapes = [(1, 3, 8, 8), (2, 3, 4, 6)]
    m = measure(runners, shapes, MeasureOptions(warmup=2, iters=4, switch_gap_s=0.0, settle_calls=0))
    names = [e[1] for e in log]
    # phase 1: r0 opened and warmed at both shapes (2 calls each) before r1 is even opened
    assert log[:5] == [("open", "r0"), ("infer", "r0", (1, 3, 8, 8)), ("infer", "r0", (1, 3, 8, 8)),
                       ("infer", "r0", (2, 3, 4, 6)), ("infer", "r0", (2, 3, 4, 6))]
    assert log[5] == ("open", "r1") and log[10] == ("open", "r2")
    # phase 2, shape 0: one untimed round in order, then 4 rotating rounds
    p2 = [e for e in log[15:] if e[0] == "infer" and e[2] == (1, 3, 8, 8)]
    assert [e[1] for e in p2[:3]] == ["r0", "r1", "r2"]
    assert [e[1] for e in p2[3:]] == ["r0", "r1", "r2", "r1", "r2", "r0", "r2", "r0", "r1", "r0", "r1", "r2"]
    assert m.call_log[:12] == [(0, i) for k in range(4) for i in rotation(3, k)]
    assert m.call_log[12:] == [(1, i) for k in range(4) for i in rotation(3, k)]
    assert m.rounds == {0: 4, 1: 4}
    # every runner closed at the end
    assert names[-3:] == ["r0", "r1", "r2"] and all(e[0] == "close" for e in log[-3:])
    # one result per (runner, shape), with exactly the timed calls
    assert [(r.runner, r.shape, r.calls) for r in m.results] == [
        (i, s, 4) for s in shapes for i in range(3)]
    assert all(r.output_shape == [s[0], 4, s[2], s[3]] for r in m.results for s in [r.shape])
    # first-call time recorded per shape, timings of phase 1 not mixed into the results
    assert all(set(rec.first_call_ms) == {0, 1} for rec in m.records)


def test_each_timed_call_follows_untimed_settle_calls_of_the_same_runner():
    log: list = []
    runners = [RecordingRunner(f"r{i}", log, seed=i) for i in range(2)]
    m = measure(runners, [(1, 3, 4, 4)], MeasureOptions(warmup=1, iters=3, switch_gap_s=0.0, settle_calls=2))
    p2 = [e[1] for e in log if e[0] == "infer"][2 + 2:]  # after phase 1 (1 warmup each) and the untimed round
    # round 0: r0 x (2 settle + 1 timed), r1 x 3; round 1 starts at r1; round 2 at r0
    assert p2 == ["r0"] * 3 + ["r1"] * 3 + ["r1"] * 3 + ["r0"] * 3 + ["r0"] * 3 + ["r1"] * 3
    assert [r.calls for r in m.results] == [3, 3]  # settle calls are not timed results
    single: list = []
    measure([RecordingRunner("alone", single)], [(1, 3, 4, 4)], MeasureOptions(warmup=1, iters=3, settle_calls=2))
    assert sum(e[0] == "infer" for e in single) == 1 + 1 + 3  # one runner: nothing to settle after


def test_measure_compares_outputs_with_the_baseline():
    log: list = []
    same = [RecordingRunner("a", log, seed=1), RecordingRunner("b", log, seed=1), RecordingRunner("c", log, seed=2)]
    m = measure(same, [(1, 3, 16, 16)], MeasureOptions(warmup=1, iters=1, switch_gap_s=0.0))
    agree = {r.runner: r.argmax_agreement_vs_baseline for r in m.results}
    assert agree[0] is None and agree[1] == 1.0
    assert 0.0 <= agree[2] < 1.0  # different weights: different argmax somewhere on random input


def test_seconds_mode_runs_at_least_min_iters_rounds():
    log: list = []
    m = measure([RecordingRunner("a", log)], [(1, 3, 4, 4)], MeasureOptions(warmup=1, iters=None, seconds=1e-6,
                                                                               min_iters=3))
    assert m.rounds[0] >= 3
    assert m.results[0].calls == m.rounds[0]


def test_runners_are_closed_when_one_fails():
    log: list = []

    class Broken(RecordingRunner):
        def _infer(self, x):
            raise UsageError("boom; fix it")

    runners = [RecordingRunner("ok", log), Broken("bad", log)]
    with pytest.raises(UsageError, match="boom"):
        measure(runners, [(1, 3, 4, 4)], MeasureOptions(warmup=1, iters=2, switch_gap_s=0.0))
    assert not runners[0].is_open and not runners[1].is_open


def test_on_open_hook_can_refuse_a_runner():
    log: list = []

    def refuse(i, r):
        if i == 1:
            raise UsageError(f"{r.name} refused; use another")

    runners = [RecordingRunner("a", log), RecordingRunner("b", log)]
    with pytest.raises(UsageError, match="b refused"):
        measure(runners, [(1, 3, 4, 4)], MeasureOptions(warmup=1, iters=1, switch_gap_s=0.0), on_open=refuse)
    assert ("infer", "b", (1, 3, 4, 4)) not in log  # refused before any call


def test_split_is_read_from_the_runner_and_normalised_to_ms():
    log: list = []
    r = RecordingRunner("trt-like", log, split={"h2d_ms": 0.5, "compute_ms": 2.0, "d2h_ms": 0.25})
    plain = RecordingRunner("plain", log)
    m = measure([plain, r], [(1, 3, 4, 4)], MeasureOptions(warmup=1, iters=3, switch_gap_s=0.0))
    by = {x.runner: x for x in m.results}
    assert by[0].split_ms is None
    assert by[1].split_ms == {"h2d": 0.5, "compute": 2.0, "d2h": 0.25}
    assert read_split(plain) is None
    # seconds (suffix _s or none) and objects with attributes are accepted too; incomplete splits are not
    assert _split_from({"h2d_s": 0.001, "compute_s": 0.002, "d2h_s": 0.003}) == {"h2d": 1.0, "compute": 2.0, "d2h": 3.0}

    class Obj:
        h2d, compute, d2h = 0.001, 0.004, 0.002

    assert _split_from(Obj()) == {"h2d": 1.0, "compute": 4.0, "d2h": 2.0}
    assert _split_from({"h2d_ms": 1.0, "compute_ms": 2.0}) is None


def test_latency_stats_percentiles():
    s = latency_stats([0.001 * v for v in range(1, 101)])  # 1..100 ms
    assert s["min"] == pytest.approx(1.0) and s["max"] == pytest.approx(100.0)
    assert s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1) and s["p99"] == pytest.approx(99.01)
    assert s["mean"] == pytest.approx(50.5)


@pytest.mark.parametrize("bad", [dict(warmup=0), dict(iters=0), dict(iters=None, seconds=None),
                                 dict(iters=5, seconds=1.0), dict(iters=None, seconds=0.0), dict(switch_gap_s=-1.0),
                                 dict(settle_calls=-1)])
def test_measure_options_refuse_bad_values(bad):
    with pytest.raises(UsageError):
        MeasureOptions(**bad)


def test_peak_sampler_sees_memory_that_stays_allocated():
    if rss_bytes() is None:
        pytest.skip("this platform cannot report RSS")
    with PeakSampler() as s:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    assert s.rss_growth >= 48 * 2**20
    assert s.peak_rss_growth >= s.rss_growth
    del block


def test_measure_progress_counts_rounds_with_an_eta_in_a_log_and_nothing_when_quiet():
    import io

    from segdeploy.progress import Progress

    log: list = []
    stream = io.StringIO()
    runners = [RecordingRunner(f"r{i}", log, seed=i) for i in range(2)]
    measure(runners, [(1, 3, 8, 8)], MeasureOptions(warmup=1, iters=10, switch_gap_s=0.0, settle_calls=0),
            Progress(stream=stream, tty=False))
    lines = stream.getvalue().splitlines()
    assert [l.split("] ", 1)[1] for l in lines[:2]] == ["loading 1/2: r0", "loading 2/2: r1"]
    counted = [l for l in lines if "timing 1x3x8x8: " in l]
    assert any("rounds (" in l and "ETA" in l for l in counted[:-1]), lines
    assert counted[-1].split("] ", 1)[1].startswith("timing 1x3x8x8: 10/10 rounds in ")
    quiet = io.StringIO()
    measure([RecordingRunner("r", [], seed=0)], [(1, 3, 8, 8)], MeasureOptions(warmup=1, iters=3, switch_gap_s=0.0),
            Progress(False, stream=quiet, tty=False))
    assert quiet.getvalue() == ""
