"""The one evaluation loop: a dataset through several runners, as class maps at each image's original size.

Both `segdeploy check` (:mod:`segdeploy.parity.check`) and the precision stage's accuracy check and budget
search (:mod:`segdeploy.precision.accuracy`) score predictions from here, so batching, padding, NaN
handling and argmax are the same everywhere.

Contract
--------
``loop = PredictionLoop(dataset, runners, preprocess, profile, batch_size=..., on_error="fail"|"skip")``;
``for pred in loop: ...`` yields one :class:`Prediction` per evaluable image, in dataset order:

* images are decoded one at a time and grouped into batches of at most ``batch_size`` (capped at the
  profile's max batch) images that preprocess to the same input size (pad mode: padded to the spatial
  multiple; resize mode: the profile's opt size) -- a batch never mixes sizes, so batching never changes
  an image's input;
* every runner runs the same batch; their class counts and output sizes must agree (ModelLoadError /
  ShapeError otherwise), and the class count must stay the same across batches;
* per runner and image: argmax over classes, ``-1`` where any logit is NaN/Inf (``bad_pixels`` and
  ``bad_values`` count them; never a silent class 0), mapped back to the original size (crop / nearest);
* per-image problems (undecodable image, mask of another size, image above the profile, a batch a runner
  rejects) raise under ``on_error="fail"`` and are recorded in ``loop.errors`` under ``"skip"`` (a failing
  batch is retried image by image so only the bad image is skipped).

``on_classes(k)`` (optional) is called once, when the class count is first known, before anything is
yielded; it may raise to stop the run (e.g. a manifest that disagrees). ``loop.timing`` holds the seconds
spent decoding and preprocessing. Runners are not opened or closed here. ``progress`` (a
:class:`~segdeploy.progress.Progress`) shows the images predicted as one counted task named ``label``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from segdeploy.datasets.preprocess import restore_prediction, target_size, to_batch
from segdeploy.errors import DataError, ModelLoadError, SegdeployError, ShapeError, UsageError
from segdeploy.progress import Progress, Task, as_progress

ON_ERROR = ("fail", "skip")


@dataclass(frozen=True)
class ImageError:
    stem: str
    path: str
    kind: str  # data | shape | nonfinite_candidate | nonfinite_reference
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"stem": self.stem, "path": self.path, "kind": self.kind, "message": self.message}


@dataclass
class Prediction:
    """One image's class maps (original size, -1 where the logits were not finite) for every runner."""

    sample: Any  # segdeploy.datasets.Sample
    maps: dict[str, np.ndarray]
    bad_pixels: dict[str, int] = field(default_factory=dict)
    bad_values: dict[str, int] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return self.sample.stem


def class_map(logits: np.ndarray) -> tuple[np.ndarray, int, int]:
    """argmax class map of one image's KxHxW logits; -1 where any logit is NaN/Inf (+ pixel and value counts)."""
    finite = np.isfinite(logits)
    if finite.all():
        pred = logits.argmax(axis=0)
        # uint8 class maps take the confusion matrix's table-lookup fast path when used as truth
        return (pred.astype(np.uint8) if logits.shape[0] <= 255 else pred), 0, 0
    ok = finite.all(axis=0)
    pred = np.where(ok, np.nan_to_num(logits, nan=0.0, posinf=0.0, neginf=0.0).argmax(axis=0), -1)
    return pred, int((~ok).sum()), int((~finite).sum())


class PredictionLoop:
    """See the module docstring."""

    def __init__(self, dataset, runners: Mapping[str, Any], preprocess, profile, *, batch_size: int = 1,
                 limit: int | None = None, on_error: str = "fail", progress: Progress | None = None,
                 label: str = "evaluate", on_classes: Callable[[int], None] | None = None):
        if on_error not in ON_ERROR:
            raise UsageError(f"--on-error must be fail or skip, got {on_error!r}")
        if batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
        if not runners:
            raise UsageError("no runner to evaluate")
        self.dataset = dataset
        self.runners = dict(runners)
        self.preprocess = preprocess
        self.profile = profile
        self.batch_size = batch_size
        self.limit = limit
        self.on_error = on_error
        self.progress = as_progress(progress)
        self.label = label
        self.on_classes = on_classes
        self._task: Task | None = None
        self.errors: list[ImageError] = []
        self.num_classes: int | None = None
        self.timing = {"load_s": 0.0, "preprocess_s": 0.0}
        self.consumed = 0

    @property
    def total(self) -> int:
        n = len(self.dataset)
        return n if self.limit is None else min(n, self.limit)

    def record(self, stem: str, path: str, kind: str, err: SegdeployError) -> None:
        """Raise ``err`` under on_error="fail"; otherwise remember it."""
        if self.on_error == "fail":
            raise err
        self.errors.append(ImageError(stem, path, kind, err.message))

    # ---- internals
    def _samples(self) -> Iterator[Any]:
        for i, e in enumerate(self.dataset.entries):
            if self.limit is not None and i >= self.limit:
                return
            self.consumed += 1
            t0 = time.perf_counter()
            try:
                s = self.dataset.load(e)
            except DataError as err:
                self.record(e.stem, e.image_path, "data", err)
                continue
            finally:
                self.timing["load_s"] += time.perf_counter() - t0
            yield s

    def _infer(self, group: list[Any]):
        t0 = time.perf_counter()
        x, infos = to_batch([s.image for s in group], self.preprocess, self.profile)
        self.timing["preprocess_s"] += time.perf_counter() - t0
        outs = {name: r.infer(x) for name, r in self.runners.items()}
        first_name, first = next(iter(outs.items()))
        for name, o in outs.items():
            if o.shape[1] != first.shape[1]:
                raise ModelLoadError(f"{first_name} outputs {first.shape[1]} classes but {name} outputs {o.shape[1]}; "
                                     "they are not the same model")
            if o.shape[2:] != first.shape[2:]:
                raise ShapeError(f"{first_name} output {first.shape} and {name} output {o.shape} differ in size")
        k = int(first.shape[1])
        if self.num_classes is None:
            if self.on_classes is not None:
                self.on_classes(k)
            self.num_classes = k
        elif k != self.num_classes:
            raise ModelLoadError(f"the model output {k} classes, earlier {self.num_classes}")
        return infos, outs

    def _batch(self, group: list[Any]) -> Iterator[Prediction]:
        try:
            infos, outs = self._infer(group)
        except (DataError, ShapeError) as err:
            if self.on_error == "fail":
                raise
            if len(group) == 1:
                self.record(group[0].stem, group[0].path, "shape" if isinstance(err, ShapeError) else "data", err)
                return
            for s in group:  # isolate the failing image(s); nothing of this group was yielded yet
                yield from self._batch([s])
            return
        for i, s in enumerate(group):
            maps, bad_px, bad_vals = {}, {}, {}
            try:
                for name, o in outs.items():
                    pred, npx, nval = class_map(o[i])
                    maps[name] = restore_prediction(pred, infos[i])
                    bad_px[name], bad_vals[name] = npx, nval
            except ShapeError as err:
                self.record(s.stem, s.path, "shape", err)
                continue
            yield Prediction(s, maps, bad_px, bad_vals)

    def __iter__(self) -> Iterator[Prediction]:
        def bad_size(sample, err: ShapeError) -> None:
            self.record(sample.stem, sample.path, "shape", err)

        with self.progress.task(self.label, self.total, "image") as self._task:
            for group in same_size_groups(self._samples(), self.preprocess, self.profile, self.batch_size, bad_size):
                yield from self._batch(group)
                self._task.advance(len(group))  # counted when predicted, not when read (reading runs ahead)
            self._task.update(self.total)


MAX_BATCH_PIXELS = 1 << 20  # input pixels per evaluation batch (8 images of 362x362; 3 of 640x480)


def same_size_groups(samples, preprocess, profile, batch_size: int,
                     on_bad_size: Callable[[Any, ShapeError], None] | None = None) -> Iterator[list[Any]]:
    """Consecutive samples in groups of at most ``batch_size`` (capped at the profile's max batch, and at
    :data:`MAX_BATCH_PIXELS` input pixels per group, at least one image: a batch of 8 large frames would hold
    every model's activations eight times over) that preprocess to the same input size, so batching never changes
    an image's input. A sample the profile cannot take goes to ``on_bad_size`` (raised when None)."""
    if profile is not None:
        batch_size = min(batch_size, profile.max[0])
    group: list[Any] = []
    size = None
    for s in samples:
        try:
            sz = target_size(s.image.shape[0], s.image.shape[1], preprocess, profile)
        except ShapeError as err:
            if on_bad_size is None:
                raise
            on_bad_size(s, err)
            continue
        fits = max(1, MAX_BATCH_PIXELS // max(1, sz[0] * sz[1]))
        if group and (sz != size or len(group) >= min(batch_size, fits)):
            yield group
            group = []
        group.append(s)
        size = sz
    if group:
        yield group


def preprocessed_batches(dataset, preprocess, profile, batch_size: int = 8, limit: int | None = None):
    """Decode and preprocess ``dataset`` into same-size batches -> list of (array, infos, masks|None, stems).

    Used where the same small subset is scored many times (the budget search keeps it in memory). Any bad
    image raises (DataError/ShapeError).
    """
    samples = (dataset.load(e) for e in dataset.entries[:limit])
    out = []
    for group in same_size_groups(samples, preprocess, profile, batch_size):
        arr, infos = to_batch([s.image for s in group], preprocess, profile)
        masks = [s.mask for s in group] if all(s.mask is not None for s in group) else None
        out.append((arr, infos, masks, [s.stem for s in group]))
    return out
