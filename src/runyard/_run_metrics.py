"""The metric half of Run: log, log_list, log_row, log_table, images, JSON charts, reads."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._logging_buffer import flush_all
from ._validation import check_artifact_path, check_name
from .errors import Conflict, UserError
from .records import MetricHistory, RunQuery
from .store.base import iter_runs

if TYPE_CHECKING:
    from ._logging_buffer import MetricBuffer
    from .artifacts.base import ArtifactStore
    from .store.base import Store

_now = time.time
_MAX_IMAGE_TRIES = 10_000
_PLAIN = frozenset({float, int, str, bool, type(None)})
_STEP_MIN, _STEP_MAX = -(2**63), 2**63 - 1
_ARTIFACT_KINDS = (
    "image",
    "confusion_matrix",
    "accuracy_table",
    "residuals",
    "predictions",
)
_JSON_SCHEMAS = {
    "confusion_matrix": ("1.0.0", ("class_labels", "matrix")),
    "accuracy_table": (
        "1.0.1",
        (
            "probability_tables",
            "percentile_tables",
            "probability_thresholds",
            "percentile_thresholds",
            "class_labels",
        ),
    ),
    "residuals": ("1.0.0", ("bin_edges", "bin_counts")),
    "predictions": ("1.0.0", ("bin_averages", "bin_errors", "bin_counts", "bin_edges")),
}
_IMAGE_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF",
)


@dataclass(frozen=True)
class Artifact:
    """A file a metric points to, returned by ``get_metrics(populate=True)``."""

    run_id: str
    path: str
    uri: str
    data: bytes


def plain_value(value: Any, what: str = "value") -> Any:
    """Turn ``value`` into a plain JSON scalar (numpy scalars included) or raise UserError."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, (list, tuple, range, set, frozenset, types.GeneratorType)):
        raise UserError(f"run.log does not support list type. Use run.log_list instead ({what})")
    if isinstance(value, dict):
        raise UserError(f"run.log does not support dict values; use run.log_row ({what})")
    if kind.__module__ == "numpy":
        if getattr(value, "ndim", 0) != 0:
            raise UserError(
                f"run.log does not support list type. Use run.log_list instead ({what} is a "
                f"numpy array of shape {value.shape})"
            )
        item = value.item()
        if type(item).__module__ == "numpy":  # no Python type holds it (numpy.longdouble)
            if kind.__name__ == "longdouble":
                return float(item)  # the nearest float64, as every reader takes it
            raise UserError(f"{what} of type numpy.{kind.__name__} is not supported")
        return plain_value(item, what)
    for base in (bool, int, float, str):  # subclasses such as IntEnum or np.str_
        if isinstance(value, base):
            return base(value)
    raise UserError(
        f"{what} of type {kind.__name__} is not supported: log an int, float, bool, str or None"
    )


def _sha256(source: str | io.BytesIO) -> str:
    digest = hashlib.sha256()
    if isinstance(source, io.BytesIO):
        digest.update(source.getbuffer())
        return digest.hexdigest()
    with open(source, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _plain_step(step: Any) -> int | None:
    if step is None:
        return None
    if type(step).__module__ == "numpy" and getattr(step, "ndim", 0) == 0:
        step = step.item()
    if isinstance(step, bool) or not isinstance(step, int):
        raise UserError(f"step must be an int, not {type(step).__name__} {step!r}")
    if not _STEP_MIN <= step <= _STEP_MAX:
        raise UserError(f"step {step} does not fit in 64 bits (-2**63 to 2**63 - 1)")
    return step


def _as_list(value: Any, what: str) -> list[Any]:
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        if getattr(value, "ndim", 1) != 1:
            raise UserError(f"{what} must be one-dimensional, got shape {value.shape}")
        value = value.tolist()
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise UserError(f"{what} must be a list of values, not {type(value).__name__}")
    return [plain_value(v, f"an element of {what}") for v in value]


class MetricsMixin:
    """Metric methods of :class:`runyard.Run`."""

    if TYPE_CHECKING:

        @property
        def id(self) -> str: ...

    _buffer_obj: MetricBuffer | None
    _store: Store
    _artifacts: ArtifactStore
    experiment: Any

    if TYPE_CHECKING:  # provided by Run and FilesMixin

        def _buffer(self) -> MetricBuffer: ...
        def upload_file(self, name: str, path_or_stream: Any) -> Any: ...

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        """Log one value of the scalar metric ``name`` (optionally at ``step``).

        >>> run.log("loss", 0.25, step=10)    # doctest: +SKIP
        """
        buffer = self._buffer_obj
        if buffer is not None and type(value) in _PLAIN and not description:
            points = buffer.scalars.get(name)
            if points is not None and (
                step is None or (type(step) is int and _STEP_MIN <= step <= _STEP_MAX)
            ):
                points.append((value, step, _now()))
                return
        check_name(name, "metric name")
        value = plain_value(value, f"value of metric {name!r}")
        series = self._buffer().series_for(name, "scalar", description)
        series.points.append((value, _plain_step(step), _now()))

    def log_list(self, name: str, value: Any, description: str = "") -> None:
        """Log a list of values as the metric ``name``.

        >>> run.log_list("accuracies", [0.6, 0.7, 0.87])    # doctest: +SKIP
        """
        check_name(name, "metric name")
        values = _as_list(value, f"value of metric {name!r}")
        if not values:
            raise UserError(f"log_list({name!r}) needs at least one value; the list is empty")
        series = self._buffer().series_for(name, "list", description)
        now = _now()
        series.points.extend((v, None, now) for v in values)

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        """Log one row of the table metric ``name``: ``run.log_row("xy", x=1, y=0.4)``."""
        check_name(name, "metric name")
        if not kwargs:
            raise UserError(f"log_row({name!r}) needs columns: run.log_row({name!r}, x=1, y=2)")
        row = {
            check_name(k, "column name"): plain_value(v, f"column {k!r} of table {name!r}")
            for k, v in kwargs.items()
        }
        self._buffer().series_for(name, "table", description or "").points.append(
            (row, None, _now())
        )

    def log_table(self, name: str, value: dict[str, Any], description: str = "") -> None:
        """Log a table given as ``{column: [values...]}``; all columns the same length."""
        check_name(name, "metric name")
        if not isinstance(value, dict) or not value:
            raise UserError(
                f"log_table({name!r}) takes a dict of columns such as {{'x': [1, 2], 'y': [3, 4]}}"
            )
        columns = {
            check_name(k, "column name"): _as_list(v, f"column {k!r} of table {name!r}")
            for k, v in value.items()
        }
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) != 1:
            raise UserError(
                f"columns of table {name!r} have different lengths {lengths}; "
                "give every column the same number of values"
            )
        rows = [
            dict(zip(columns, values, strict=True))
            for values in zip(*columns.values(), strict=True)
        ]
        series = self._buffer().series_for(name, "table", description)
        now = _now()
        series.points.extend((row, None, now) for row in rows)

    def log_image(
        self, name: str, path: str | None = None, plot: Any = None, description: str = ""
    ) -> None:
        """Log an image file (``path``) or a matplotlib figure or pyplot (``plot``)."""
        check_name(name, "metric name")
        if (path is None) == (plot is None):
            raise UserError("log_image takes exactly one of path= (an image file) or plot=")
        if path is not None:
            path = os.fspath(path)
            if not os.path.isfile(path):
                raise UserError(f"log_image: {path!r} is not a file; give the path of an image")
            with open(path, "rb") as fh:
                head = fh.read(16)
            if not (head.startswith(_IMAGE_MAGIC) or head.lstrip().startswith(b"<svg")):
                raise UserError(
                    f"log_image: {path!r} is not an image (PNG, JPEG, GIF, BMP, TIFF, WebP, SVG)"
                )
            target = path if not os.path.isabs(path) else os.path.basename(path)
            target = check_artifact_path(target.replace(os.sep, "/"))
            check_artifact_path(f"{name}_0.png")
            self._check_series_kind(name, "image")
            target = self._store_image(name, target, path, os.path.splitext(target)[1])
        else:
            if not hasattr(plot, "savefig"):
                raise UserError("log_image: plot must be a matplotlib Figure or pyplot module")
            check_artifact_path(f"{name}_0.png")
            self._check_series_kind(name, "image")
            buf = io.BytesIO()
            plot.savefig(buf, format="png")
            target = self._store_image(name, None, buf, ".png")
        self._buffer().series_for(name, "image", description).points.append((target, None, _now()))

    def _store_image(
        self, name: str, preferred: str | None, source: str | io.BytesIO, ext: str
    ) -> str:
        """Upload an image of the series ``name``; return the artifact path it got.

        ``preferred`` (the image file's own path) is taken when free, and reused when it
        already holds the same bytes. Otherwise the image becomes ``<name>_<unix ts><ext>``,
        and further images of the series within that second ``<name>_<unix ts>_<n><ext>``
        (n = 1, 2, ...), so a plot per epoch never collides, even from several handles.
        """
        if preferred is not None:
            try:
                self.upload_file(preferred, source)
                return preferred
            except Conflict:
                if self._store.get_artifact(self.id, preferred).digest == _sha256(source):
                    return preferred
        seen: dict[str, tuple[int, int]] = self.__dict__.setdefault("_image_names", {})
        stamp = int(_now())
        last_stamp, last = seen.get(name, (-1, -1))
        number = last + 1 if last_stamp == stamp else 0
        for _ in range(_MAX_IMAGE_TRIES):
            target = check_artifact_path(f"{name}_{stamp}{f'_{number}' if number else ''}{ext}")
            if isinstance(source, io.BytesIO):
                source.seek(0)
            try:
                self.upload_file(target, source)
            except Conflict:  # taken by another handle or process: try the next number
                number += 1
                continue
            seen[name] = (stamp, number)
            return target
        raise Conflict(
            f"log_image({name!r}): {_MAX_IMAGE_TRIES} images named {name}_{stamp}_<n>{ext} "
            "exist already; log under another name"
        )

    def _check_series_kind(self, name: str, kind: str) -> None:
        self._buffer().series_for(name, kind, "")

    def _log_json_artifact(self, kind: str, name: str, value: Any, description: str) -> None:
        check_name(name, "metric name")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise UserError("Invalid JSON provided") from None
        if not isinstance(value, dict):
            raise UserError(f"log_{kind} takes a dict or a JSON string, not {type(value).__name__}")
        version, required = _JSON_SCHEMAS[kind]
        document = value if "data" in value else {"data": value}
        data = document.get("data")
        missing = [k for k in required if not isinstance(data, dict) or k not in data]
        if missing:
            raise UserError(
                f"log_{kind}({name!r}): the data is missing {', '.join(missing)}; "
                f"expected {{'schema_type': '{kind}', 'schema_version': '{version}', "
                f"'data': {{{', '.join(repr(k) + ': ...' for k in required)}}}}}"
            )
        if document.get("schema_type", kind) != kind:
            raise UserError(
                f"log_{kind} was given schema_type {document['schema_type']!r}; use log_"
                f"{document['schema_type']} or fix the schema_type"
            )
        document = {"schema_type": kind, "schema_version": version, **document}
        target = check_artifact_path(name)
        self._check_series_kind(name, kind)
        payload = json.dumps(document, allow_nan=True).encode()
        self.upload_file(target, io.BytesIO(payload))
        self._buffer().series_for(name, kind, description).points.append((target, None, _now()))

    def log_confusion_matrix(self, name: str, value: Any, description: str = "") -> None:
        """Log a confusion matrix: ``{"class_labels": [...], "matrix": [[...]]}`` as data."""
        self._log_json_artifact("confusion_matrix", name, value, description)

    def log_accuracy_table(self, name: str, value: Any, description: str = "") -> None:
        """Log an accuracy table (schema ``accuracy_table`` 1.0.1)."""
        self._log_json_artifact("accuracy_table", name, value, description)

    def log_residuals(self, name: str, value: Any, description: str = "") -> None:
        """Log residuals: ``bin_edges`` (n+1) and ``bin_counts`` (n)."""
        self._log_json_artifact("residuals", name, value, description)

    def log_predictions(self, name: str, value: Any, description: str = "") -> None:
        """Log predictions: ``bin_averages``, ``bin_errors``, ``bin_counts``, ``bin_edges``."""
        self._log_json_artifact("predictions", name, value, description)

    # -- reading ------------------------------------------------------------------------
    def get_metrics(
        self,
        name: str | None = None,
        recursive: bool = False,
        run_type: str | None = None,
        populate: bool = False,
    ) -> dict[str, Any]:
        """Metrics by name: one value → the value, several → a list, tables → column lists.

        ``recursive=True`` returns ``{run_id: {name: value}}`` for this run and its
        descendants that have metrics.
        """
        flush_all(self.id)  # what this process logged for this run, through any handle
        if not recursive:
            found = self._store.get_histories([self.id], name, values_only=True)
            histories = found.get(self.id, [])
            return self._shape(self.id, histories, name, populate)
        ids = [self.id] if run_type in (None, getattr(self, "type", None)) else []
        for record in iter_runs(self._store, RunQuery(root_id=self.id, type=run_type)):
            ids.append(record.id)
        flush_all(ids)
        result = {}
        for run_id, histories in self._store.get_histories(ids, name, values_only=True).items():
            shaped = self._shape(run_id, histories, name, populate)
            if shaped:
                result[run_id] = shaped
        return result

    def get_metric_history(self, name: str) -> MetricHistory:
        """Every point of one series: ``.steps``, ``.values``, ``.times`` (epoch seconds)."""
        flush_all(self.id)
        return self._store.get_history(self.id, name)

    def _shape(
        self, run_id: str, histories: list[MetricHistory], name: str | None, populate: bool
    ) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for history in histories:
            if name is not None and history.name != name:
                continue
            values: Sequence[Any] = history.values
            if history.kind == "table":
                columns: dict[str, list[Any]] = {}
                for row in values:
                    for key in row:
                        columns.setdefault(key, [])
                for row in values:
                    for key, column in columns.items():
                        column.append(row.get(key))
                if len(values) == 1:
                    result[history.name] = {k: v[0] for k, v in columns.items()}
                else:
                    result[history.name] = columns
                continue
            if history.kind in _ARTIFACT_KINDS:
                values = [self._artifact_value(run_id, path, populate) for path in values]
            result[history.name] = values[0] if len(values) == 1 else values
        return result

    def _artifact_value(self, run_id: str, path: str, populate: bool) -> Any:
        uri = f"aml://artifactId/ExperimentRun/dcid.{run_id}/{path}"
        if not populate:
            return uri
        with self._artifacts.open(run_id, path) as fh:
            return Artifact(run_id, path, uri, fh.read())
