"""Accuracy budget: sensitivity ranking, greedy fallback, GateError when unreachable."""

from __future__ import annotations

import onnx
import pytest

from segdeploy.errors import GateError, UsageError
from segdeploy.precision.accuracy import Evaluator
from segdeploy.precision.budget import BudgetNotMet, search_budget
from segdeploy.precision.qdq import _name_nodes
from segdeploy.spec import Preprocess, ShapeProfile

from precision_helpers import write_images


@pytest.fixture(scope="module")
def setup(tiny, tmp_path_factory):
    module, path, ranges, _ = tiny
    d = tmp_path_factory.mktemp("budget")
    write_images(d / "images", 8, 32, seed=3)
    from segdeploy.datasets import open_dataset

    ds = open_dataset(d / "images")  # no masks: scored against the reference's predictions
    profile = ShapeProfile((1, 3, 16, 16), (1, 3, 32, 32), (4, 3, 64, 64), 2)
    ev = Evaluator(module, ds, preprocess=Preprocess(), profile=profile, num_classes=4, limit=8, batch_size=4)
    m = onnx.load(path)
    _name_nodes(m.graph)
    c3 = next(n for n in m.graph.node if n.op_type == "Conv" and "c3" in n.name)
    # an artificially sensitive layer: its input range is inflated 2000x, so int8 flattens its input
    bad = dict(ranges)
    bad[c3.input[0]] = ranges[c3.input[0]] * 2000.0
    yield m, bad, ev, c3.name
    ev.close()


def test_budget_keeps_the_sensitive_layer_out(setup):
    m, bad, ev, victim = setup
    # measured on this model/subset: all-int8 with honest ranges ~3 points (a 4-class random net, 8 images),
    # with the inflated range ~40 points
    res = search_budget(m, bad, ev, max_drop=10.0)
    assert res.initial_drop > 10.0  # the inflated range really hurts
    assert [c.name for c in res.excluded] == [victim]
    assert res.drop <= 10.0
    assert res.excluded[0].sensitivity > 0 and res.excluded[0].weights == 32 * 32 * 9
    assert 0 < res.excluded[0].mac_share < 1  # its share of the int8 multiply-accumulates
    assert victim not in {n.name for n in res.model.graph.node if any(i.endswith("_dequantized") for i in n.input)}
    d = res.to_dict()
    assert d["kept_out"][0]["layer"] == victim and d["final_drop_points"] <= 10.0


def test_budget_only_one_mode_finds_it_too(setup):
    m, bad, ev, victim = setup
    res = search_budget(m, bad, ev, max_drop=10.0, mode="only_one")
    assert res.excluded[0].name == victim


def test_budget_met_without_fallback(setup, tiny):
    m, _, ev, _ = setup
    res = search_budget(m, tiny[2], ev, max_drop=100.0)
    assert res.excluded == [] and res.evaluations >= 1


def test_unreachable_budget_raises_gate_error(setup):
    m, bad, ev, _ = setup
    with pytest.raises(BudgetNotMet) as ei:
        search_budget(m, bad, ev, max_drop=0.5, max_fallback=0)
    e = ei.value
    assert isinstance(e, GateError) and e.exit_code == 3
    assert "cannot meet --max-miou-drop 0.5" in str(e) and "best drop" in str(e)
    assert e.best_drop == pytest.approx(e.initial_drop) and e.best_drop > 0.5


def test_bad_budget_options(setup):
    m, bad, ev, _ = setup
    with pytest.raises(UsageError, match="sensitivity mode"):
        search_budget(m, bad, ev, 1.0, mode="random")
    with pytest.raises(UsageError, match=">= 0"):
        search_budget(m, bad, ev, -1.0)



def test_budget_progress_lines(setup, tiny, tmp_path):
    """The reference pass over the subset and the sensitivity measurements are counted; every phase says itself."""
    import io

    from segdeploy.datasets import open_dataset
    from segdeploy.progress import Progress

    m, bad, _, victim = setup
    write_images(tmp_path / "images", 8, 32, seed=3)
    stream = io.StringIO()
    progress = Progress(stream=stream, tty=False)
    profile = ShapeProfile((1, 3, 16, 16), (1, 3, 32, 32), (4, 3, 64, 64), 2)
    with Evaluator(tiny[0], open_dataset(tmp_path / "images"), preprocess=Preprocess(), profile=profile, num_classes=4,
                   limit=8, batch_size=4, progress=progress) as ev:
        search_budget(m, bad, ev, max_drop=10.0, progress=progress)
    lines = [l.split("] ", 1)[1] for l in stream.getvalue().splitlines()]
    assert lines[0].startswith("budget: reference on the subset: 4/8 images (50%), ETA")
    assert lines[1].startswith("budget: reference on the subset: 8/8 images in ")
    assert lines[2].startswith("budget: scoring all ") and lines[2].endswith(" layers in INT8 on 8 images")
    assert any(l.startswith("budget: sensitivity: ") and "layers in" in l for l in lines)
    assert any(l.startswith(f"budget: kept {victim} in float") for l in lines)
