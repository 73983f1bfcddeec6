"""Per-camera face-size prior: which face sizes occur where in a fixed camera's frame.

Faces far from a fixed camera are small and near ones large, so most of the frame never shows
most sizes. The prior divides the frame into a ``grid_cols`` x ``grid_rows`` grid and keeps,
per cell, a histogram of the sizes (longer box side, px) of the tracked faces whose box centre
fell in it, in quarter-octave bins from 4 px. Once ``min_observations`` faces have been seen
it answers, per cell, the sizes to scan for: the lowest to the highest occupied bin, widened by
``size_margin`` both ways. A cell with fewer than ``min_cell_observations`` faces takes the
union of its row's known cells; a row with none takes the union of the nearest known rows
above and below, or - above every known row - anything from ``min_face_px`` up to the nearest
row's largest, and - below every known row - anything from the nearest row's smallest up (a
camera looks down at a floor: faces shrink towards the horizon). Whatever this gets wrong is
put right by the periodic full scan (pipeline/detect/planner.py), whose faces feed the prior.
A cell's histogram halves (rounding down) once it holds more than 512 faces, so geometry that
stopped occurring fades.

:meth:`SizePrior.plan` turns rectangles to scan into :class:`ScanRegion` s, choosing the
cheapest of: each rectangle whole at the union of its cells' sizes, bands of grid rows, or
blocks of grid cells, each grown by context (0.75 of its largest face, at most one cell) so
faces crossing its edge are seen whole, keeping only faces centred in it; a block's sizes are
scanned two octaves at a time, so the wide context of its largest faces is scanned only at
the coarse scale they need. Cost is what the
detector itself reports (:meth:`Detector.input_pixels`: MTCNN's P-Net pyramid pixels,
YuNet's resized input).
:meth:`SizePrior.face_regions` adds a region around each known face of a size its cell does
not expect, at that face's size, so a face of a new size that a full scan found keeps being
found until its track is confirmed and learnt.

:class:`PriorStore` keeps a live camera's prior in a small JSON file across restarts.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pipeline.config import SizePriorConfig
from pipeline.detect.scan import FaceSizeRange, Rect, ScanRegion, clip_rect
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

BINS_PER_OCTAVE = 4
FIRST_BIN_PX = 4.0
N_BINS = 32  # 4 px to 1024 px
_CELL_CAP = 512
# faces of at most ``max_px`` centred in a region: grow it this much of max_px each way (at
# most one grid cell)
_CONTEXT_OF_SIZE = 0.75
# a region around one known face reaches at least this far beyond its box
_FACE_CONTEXT_MIN_PX = 48.0
# a block's sizes are scanned in parts spanning at most this ratio (two octaves)
_SPLIT_RATIO = 4.0
STATE_VERSION = 1

# (height, width, sizes) -> pixels the detector reads: Detector.input_pixels
CostFn = Callable[[int, int, FaceSizeRange], int]


def size_bin(size_px: float) -> int:
    """Histogram bin of a face ``size_px`` (clamped to the first and last bins)."""
    k = math.floor(math.log2(max(size_px, 1e-3) / FIRST_BIN_PX) * BINS_PER_OCTAVE)
    return int(min(max(k, 0), N_BINS - 1))


def bin_edges_px(k: int) -> tuple[float, float]:
    """Lower and upper face size of bin ``k``, px."""
    return (FIRST_BIN_PX * 2.0 ** (k / BINS_PER_OCTAVE),
            FIRST_BIN_PX * 2.0 ** ((k + 1) / BINS_PER_OCTAVE))


def _edges(length: int, cells: int) -> list[int]:
    return [round(i * length / cells) for i in range(cells + 1)]


class SizePrior:
    """One camera's face sizes per grid cell; not thread-safe (one analysis thread owns it).

    ``min_face_px``: the detector's; no range goes below it.
    """

    def __init__(self, cfg: SizePriorConfig, min_face_px: float) -> None:
        self.cfg = cfg
        self._min_face_px = float(min_face_px)
        self._counts = np.zeros((cfg.grid_rows, cfg.grid_cols, N_BINS), dtype=np.int64)
        self.frame_wh: tuple[int, int] | None = None
        self.observations = 0

    @property
    def converged(self) -> bool:
        """Enough faces seen for :meth:`plan` to narrow the scan."""
        return self.observations >= self.cfg.min_observations

    def _use_frame(self, frame_wh: tuple[int, int]) -> None:
        frame_wh = (int(frame_wh[0]), int(frame_wh[1]))
        if self.frame_wh != frame_wh:
            if self.frame_wh is not None:
                log.info("size prior: frame size changed %s -> %s; learning again",
                         self.frame_wh, frame_wh)
                self._counts[:] = 0
                self.observations = 0
            self.frame_wh = frame_wh

    def observe(self, bbox_xyxy: Sequence[float], frame_wh: tuple[int, int]) -> None:
        """Count one tracked face (box in frame pixels) in the cell of its centre. A new frame
        size (``(width, height)``) starts learning again."""
        self._use_frame(frame_wh)
        width, height = self.frame_wh
        x1, y1, x2, y2 = (float(v) for v in bbox_xyxy)
        col = min(max(int((x1 + x2) / 2 * self.cfg.grid_cols / width), 0), self.cfg.grid_cols - 1)
        row = min(max(int((y1 + y2) / 2 * self.cfg.grid_rows / height), 0), self.cfg.grid_rows - 1)
        cell = self._counts[row, col]
        cell[size_bin(max(x2 - x1, y2 - y1))] += 1
        self.observations += 1
        if cell.sum() > _CELL_CAP:
            cell //= 2

    def cell_sizes(self) -> list[list[FaceSizeRange]]:
        """Face sizes to scan for, per cell ``[row][col]`` (see the module doc)."""
        cfg = self.cfg
        margin = cfg.size_margin
        floor = self._min_face_px
        known: dict[tuple[int, int], FaceSizeRange] = {}
        for row, col in zip(*np.nonzero(self._counts.sum(axis=2) >= cfg.min_cell_observations),
                            strict=True):
            occupied = np.flatnonzero(self._counts[row, col])
            low = bin_edges_px(int(occupied[0]))[0] / margin
            high = bin_edges_px(int(occupied[-1]))[1] * margin
            known[(int(row), int(col))] = FaceSizeRange(max(low, floor), max(high, floor))
        rows: dict[int, FaceSizeRange] = {}
        for (row, _col), sizes in known.items():
            rows[row] = rows[row].union(sizes) if row in rows else sizes
        everything = FaceSizeRange(floor)
        row_sizes = []
        for row in range(cfg.grid_rows):
            above = [r for r in rows if r < row]
            below = [r for r in rows if r > row]
            if row in rows:
                sizes = rows[row]
            elif above and below:
                sizes = rows[max(above)].union(rows[min(below)])
            elif below:  # above every known row: smaller faces, down to min_face_px
                sizes = FaceSizeRange(floor, rows[min(below)].max_px)
            elif above:  # below every known row: larger faces
                sizes = FaceSizeRange(rows[max(above)].min_px)
            else:
                sizes = everything
            row_sizes.append(sizes)
        return [[known.get((row, col), row_sizes[row]) for col in range(cfg.grid_cols)]
                for row in range(cfg.grid_rows)]

    def plan(self, rects: Sequence[Rect], cost: CostFn) -> list[ScanRegion]:
        """Scan regions for ``rects`` (frame pixels, in the frame of the last
        :meth:`observe`), each at the sizes its cells need; the cheapest split by ``cost``.
        Raises PipelineError before any face was observed."""
        if self.frame_wh is None:
            raise PipelineError("size prior: plan() before any face was observed")
        width, height = self.frame_wh
        cells = self.cell_sizes()
        xs, ys = _edges(width, self.cfg.grid_cols), _edges(height, self.cfg.grid_rows)
        regions: list[ScanRegion] = []
        for rect in rects:
            rect = clip_rect(rect, width, height)
            if rect is None:
                continue
            c0, c1 = _cell_span(xs, rect[0], rect[2])
            r0, r1 = _cell_span(ys, rect[1], rect[3])
            grid = [cells[r][c0:c1 + 1] for r in range(r0, r1 + 1)]
            options = [[ScanRegion(rect, _union([s for row in grid for s in row]), rect)],
                       self._blocks(rect, [[_union(row)] * len(row) for row in grid],
                                    c0, r0, xs, ys),
                       self._blocks(rect, grid, c0, r0, xs, ys)]
            costs = [sum(cost(r.height, r.width, r.sizes) for r in option) for option in options]
            regions += options[int(np.argmin(costs))]
        return regions

    def face_regions(self, face_boxes_xyxy: Sequence[Sequence[float]]) -> list[ScanRegion]:
        """Regions around known faces (the previous pass's, tracked ones) whose size the
        prior does not expect where they are: each at its own size (widened by
        ``size_margin``), so a face first found by a full scan is found again and its track
        confirmed, and learnt. Raises PipelineError before any face was observed."""
        if self.frame_wh is None:
            raise PipelineError("size prior: face_regions() before any face was observed")
        width, height = self.frame_wh
        cells = self.cell_sizes()
        margin = self.cfg.size_margin
        regions = []
        for box in face_boxes_xyxy:
            x1, y1, x2, y2 = (float(v) for v in box)
            size = max(x2 - x1, y2 - y1)
            col = min(max(int((x1 + x2) / 2 * self.cfg.grid_cols / width), 0),
                      self.cfg.grid_cols - 1)
            row = min(max(int((y1 + y2) / 2 * self.cfg.grid_rows / height), 0),
                      self.cfg.grid_rows - 1)
            expected = cells[row][col]
            if expected.min_px <= size <= expected.max_px:
                continue
            grow = max(size, _FACE_CONTEXT_MIN_PX)
            rect = clip_rect((math.floor(x1 - grow), math.floor(y1 - grow),
                              math.ceil(x2 + grow), math.ceil(y2 + grow)), width, height)
            if rect is not None:
                sizes = FaceSizeRange(max(size / margin, self._min_face_px),
                                      max(size * margin, self._min_face_px))
                regions.append(ScanRegion(rect, sizes, rect))
        return regions

    def _blocks(self, rect: Rect, grid: list[list[FaceSizeRange]], c0: int, r0: int,
                xs: list[int], ys: list[int]) -> list[ScanRegion]:
        """Runs of equal sizes along each grid row, merged down the rows, as regions: keep
        the block's cells (within ``rect``), scan it grown by context (within ``rect``)."""
        width, height = self.frame_wh
        open_blocks: dict[tuple[int, int, FaceSizeRange], list[int]] = {}
        done: list[tuple[int, int, FaceSizeRange, int, int]] = []
        for i, row in enumerate(grid):
            runs, start = [], 0
            for j in range(1, len(row) + 1):
                if j == len(row) or row[j] != row[start]:
                    runs.append((start, j - 1, row[start]))
                    start = j
            still_open = {}
            for run in runs:
                first = open_blocks.pop(run, [i])[0]
                still_open[run] = [first]
            for (j0, j1, sizes), (first,) in open_blocks.items():
                done.append((j0, j1, sizes, first, i - 1))
            open_blocks = still_open
        for (j0, j1, sizes), (first,) in open_blocks.items():
            done.append((j0, j1, sizes, first, len(grid) - 1))
        # context for faces centred near the edge, at most a grid cell: a larger face there is
        # still found once tracked (face_regions) and by the full scans
        cell_px = min(width / self.cfg.grid_cols, height / self.cfg.grid_rows)
        regions = []
        for j0, j1, sizes, i0, i1 in done:
            keep = clip_rect((max(xs[c0 + j0], rect[0]), max(ys[r0 + i0], rect[1]),
                              min(xs[c0 + j1 + 1], rect[2]), min(ys[r0 + i1 + 1], rect[3])),
                             width, height)
            if keep is None:
                continue
            for part in _split_sizes(sizes, max(width, height)):
                grow = math.ceil(min(_CONTEXT_OF_SIZE * part.max_px, cell_px))
                scan = (max(keep[0] - grow, rect[0]), max(keep[1] - grow, rect[1]),
                        min(keep[2] + grow, rect[2]), min(keep[3] + grow, rect[3]))
                regions.append(ScanRegion(scan, part, keep))
        return regions

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> dict:
        """JSON-ready state: grid, frame size, bins and the non-zero counts."""
        nz = np.nonzero(self._counts)
        return {"version": STATE_VERSION, "grid_cols": self.cfg.grid_cols,
                "grid_rows": self.cfg.grid_rows, "frame_wh": list(self.frame_wh or ()),
                "first_bin_px": FIRST_BIN_PX, "bins_per_octave": BINS_PER_OCTAVE,
                "bins": N_BINS, "observations": self.observations,
                "counts": [[int(r), int(c), int(b), int(self._counts[r, c, b])]
                           for r, c, b in zip(*nz, strict=True)]}

    @classmethod
    def from_json(cls, data: dict, cfg: SizePriorConfig, min_face_px: float) -> SizePrior:
        """A prior from :meth:`to_json`'s output. Raises ValueError when it was learnt with
        another grid or binning (the caller then starts afresh)."""
        expected = {"version": STATE_VERSION, "grid_cols": cfg.grid_cols,
                    "grid_rows": cfg.grid_rows, "first_bin_px": FIRST_BIN_PX,
                    "bins_per_octave": BINS_PER_OCTAVE, "bins": N_BINS}
        got = {key: data.get(key) for key in expected}
        if got != expected:
            raise ValueError(f"size prior state: expected {expected}, got {got}")
        prior = cls(cfg, min_face_px)
        if data.get("frame_wh"):
            prior.frame_wh = (int(data["frame_wh"][0]), int(data["frame_wh"][1]))
        for row, col, k, count in data.get("counts", []):
            prior._counts[row, col, k] = count
        prior.observations = int(data.get("observations", 0))
        return prior


def _cell_span(edges: list[int], start: int, end: int) -> tuple[int, int]:
    """First and last cell index (along one axis) that ``[start, end)`` overlaps."""
    first = max(0, int(np.searchsorted(edges, start, side="right")) - 1)
    last = max(first, int(np.searchsorted(edges, end, side="left")) - 1)
    return first, min(last, len(edges) - 2)


def _split_sizes(sizes: FaceSizeRange, frame_px: float) -> list[FaceSizeRange]:
    """A wide range as octave pairs (``[m, 4m], [4m, 16m], ...``, the last open-ended part
    starting below ``frame_px``): the small faces get little context at fine scale, the large
    ones their wide context at coarse scale only."""
    parts, low = [], sizes.min_px
    while low * _SPLIT_RATIO < min(sizes.max_px, frame_px):
        parts.append(FaceSizeRange(low, low * _SPLIT_RATIO))
        low *= _SPLIT_RATIO
    parts.append(FaceSizeRange(low, sizes.max_px))
    return parts


def _union(sizes: Sequence[FaceSizeRange]) -> FaceSizeRange:
    out = sizes[0]
    for item in sizes[1:]:
        out = out.union(item)
    return out


class PriorStore:
    """A live camera's prior in ``<state_dir>/<camera id>.size_prior.json``: loaded at start,
    written every ``save_interval_s`` of stream time and at the end (atomically: a crash
    leaves the previous file)."""

    def __init__(self, state_dir: Path, camera_id: str, save_interval_s: float) -> None:
        self.path = Path(state_dir) / f"{camera_id}.size_prior.json"
        self._interval_ms = save_interval_s * 1000.0
        self._next_save_ms: float | None = None

    def load(self, cfg: SizePriorConfig, min_face_px: float) -> SizePrior:
        """The stored prior, or a new one when there is none or it cannot be used (logged)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            prior = SizePrior.from_json(data, cfg, min_face_px)
        except FileNotFoundError:
            return SizePrior(cfg, min_face_px)
        except (OSError, ValueError, TypeError, KeyError, IndexError) as err:
            log.warning("size prior %s not used (%s); learning afresh", self.path, err)
            return SizePrior(cfg, min_face_px)
        log.info("size prior %s: %d faces learnt before", self.path, prior.observations)
        return prior

    def maybe_save(self, prior: SizePrior, ts_ms: float) -> None:
        """Save when ``save_interval_s`` of stream time passed since the last save."""
        if self._next_save_ms is None:
            self._next_save_ms = ts_ms + self._interval_ms
        elif ts_ms >= self._next_save_ms:
            self._next_save_ms = ts_ms + self._interval_ms
            self.save(prior)

    def save(self, prior: SizePrior) -> None:
        """Write the prior now; an error is logged, never raised (it is an optimisation)."""
        if prior.frame_wh is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(prior.to_json()), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as err:
            log.warning("size prior: cannot write %s: %s", self.path, err)
