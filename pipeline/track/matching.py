"""Box similarity and optimal one-to-one assignment (no scipy needed).

Tiny faces (10-50 px) move several pixels per frame, so two boxes of the same face a few
frames apart may barely overlap. Matching uses IoU of boxes grown by a fraction of their own
size: the tolerated displacement scales with face size, while boxes of very different sizes
still score low.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BoxXYXY = tuple[float, float, float, float]


def expand_boxes(boxes_xyxy: np.ndarray, fraction: float) -> np.ndarray:
    """Grow (N, 4) xyxy boxes by ``fraction`` of their width/height on each side."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    grow = np.stack([-w, -h, w, h], axis=1) * fraction
    return boxes + grow


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes, shape (N, M)."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def solve_assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one assignment of rows to columns (Hungarian, O(n^2 m)).

    Returns ``(row, col)`` pairs; with more rows than columns some rows stay unassigned and
    vice versa. Ties break by index order, so the result is deterministic.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.size == 0:
        return []
    transposed = cost.shape[0] > cost.shape[1]
    c = cost.T if transposed else cost
    n, m = c.shape  # n <= m
    inf = float("inf")
    u = [0.0] * (n + 1)
    v = [0.0] * (m + 1)
    owner = [0] * (m + 1)  # owner[j]: 1-based row assigned to column j (0 = none)
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        minv = [inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0 = owner[j0]
            delta, j1 = inf, 0
            for j in range(1, m + 1):
                if used[j]:
                    continue
                cur = c[i0 - 1, j - 1] - u[i0] - v[j]
                if cur < minv[j]:
                    minv[j], way[j] = cur, j0
                if minv[j] < delta:
                    delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    pairs = [(owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j]]
    if transposed:
        pairs = [(col, row) for row, col in pairs]
    return sorted(pairs)


Matches = list[tuple[int, int]]


def match_boxes(track_boxes: Sequence[BoxXYXY], det_boxes: Sequence[BoxXYXY],
                min_iou: float, expand: float) -> tuple[Matches, list[int], list[int]]:
    """Match tracks to detections by IoU of expanded boxes.

    Returns ``(matches, unmatched_tracks, unmatched_detections)`` with matches as
    ``(track_index, detection_index)``; pairs below ``min_iou`` are never matched.
    """
    n_t, n_d = len(track_boxes), len(det_boxes)
    if n_t == 0 or n_d == 0:
        return [], list(range(n_t)), list(range(n_d))
    iou = iou_matrix(expand_boxes(np.array(track_boxes), expand),
                     expand_boxes(np.array(det_boxes), expand))
    gated = iou >= min_iou
    # Pairs under the gate get a cost no valid pair can reach, then are dropped afterwards.
    cost = np.where(gated, 1.0 - iou, 2.0 + n_t + n_d)
    matches = [(t, d) for t, d in solve_assignment(cost) if gated[t, d]]
    matched_t = {t for t, _ in matches}
    matched_d = {d for _, d in matches}
    return (matches, [t for t in range(n_t) if t not in matched_t],
            [d for d in range(n_d) if d not in matched_d])


def match_by_centre(track_boxes: Sequence[BoxXYXY], det_boxes: Sequence[BoxXYXY],
                    max_shift_sizes: Sequence[float],
                    max_size_ratio: float) -> tuple[Matches, list[int], list[int]]:
    """Match by centre distance measured in face sizes, for pairs IoU cannot see.

    At a low analysis rate (5 fps) a walking person's face moves one to two face widths
    between detections, so even grown boxes of a 15 px face stop overlapping. A pair is
    allowed when the centres are within ``max_shift_sizes[t]`` face sizes (per track, so it
    can grow with the time since the track was last seen) and the sizes differ by at most
    ``max_size_ratio``; the nearest pairs win.
    """
    n_t, n_d = len(track_boxes), len(det_boxes)
    if n_t == 0 or n_d == 0:
        return [], list(range(n_t)), list(range(n_d))
    t = np.asarray(track_boxes, dtype=np.float64).reshape(-1, 4)
    d = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    t_size = np.sqrt((t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1]))
    d_size = np.sqrt((d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1]))
    t_centre = (t[:, :2] + t[:, 2:]) / 2
    d_centre = (d[:, :2] + d[:, 2:]) / 2
    mean_size = np.maximum((t_size[:, None] + d_size[None, :]) / 2, 1e-6)
    shift = np.linalg.norm(t_centre[:, None, :] - d_centre[None, :, :], axis=2) / mean_size
    ratio = np.maximum(t_size[:, None], d_size[None, :]) / np.maximum(
        np.minimum(t_size[:, None], d_size[None, :]), 1e-6)
    gated = (shift <= np.asarray(max_shift_sizes, dtype=np.float64)[:, None]) & (
        ratio <= max_size_ratio)
    cost = np.where(gated, shift, 1e6)
    matches = [(i, j) for i, j in solve_assignment(cost) if gated[i, j]]
    matched_t = {i for i, _ in matches}
    matched_d = {j for _, j in matches}
    return (matches, [i for i in range(n_t) if i not in matched_t],
            [j for j in range(n_d) if j not in matched_d])
