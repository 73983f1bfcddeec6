"""Face-emotion datasets: the FER+ folder layout and a plain image-folder layout.

FER+ layout: ``DIR/label.csv`` with rows
``file,"(x, y, w, h)",neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF``
(10 crowd votes) next to the 48x48 PNG files. As in the FER+ paper, images whose top vote
is ``unknown`` or ``NF`` (not a face) are dropped and 8 classes remain. Targets come in two
forms: the majority-vote label and the vote distribution over the 8 classes.

Image-folder layout: ``ROOT/<class>/*.png`` with class names from the sub-folders (or given).
Targets are one-hot.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FERPLUS_CLASSES: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
FERPLUS_VOTE_COLUMNS: tuple[str, ...] = (*FERPLUS_CLASSES, "unknown", "NF")
_BOX_RE = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)")
_IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp"}


class DatasetError(ValueError):
    """A dataset folder is missing or malformed; the message names the file and row."""


@dataclass(frozen=True)
class FerPlusRow:
    file: str
    box_xywh: tuple[int, int, int, int]
    votes: tuple[int, ...]  # 10 votes, order FERPLUS_VOTE_COLUMNS

    @property
    def top_vote(self) -> str:
        return FERPLUS_VOTE_COLUMNS[int(np.argmax(self.votes))]

    @property
    def keep(self) -> bool:
        """False when the majority is unknown / not-a-face or no emotion vote exists."""
        return self.top_vote not in ("unknown", "NF") and sum(self.votes[:8]) > 0


@dataclass(frozen=True)
class FaceDataset:
    """Images (N, H, W) gray or (N, H, W, 3) BGR uint8 with majority labels and soft targets."""

    images: np.ndarray
    labels: np.ndarray  # (N,) int64 majority vote
    soft_targets: np.ndarray  # (N, C) float32 rows sum to 1
    class_names: tuple[str, ...]
    files: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: np.ndarray) -> FaceDataset:
        return FaceDataset(self.images[idx], self.labels[idx], self.soft_targets[idx],
                           self.class_names, tuple(self.files[i] for i in idx))


def parse_label_csv(path: Path) -> list[FerPlusRow]:
    """Parse a FER+ ``label.csv`` (a header row, if present, is skipped)."""
    rows: list[FerPlusRow] = []
    with open(path, newline="") as fh:
        for line_no, rec in enumerate(csv.reader(fh), start=1):
            if not rec or (line_no == 1 and not rec[0].lower().endswith(tuple(_IMAGE_EXTS))):
                continue
            if len(rec) != 12:
                raise DatasetError(f"{path}:{line_no}: expected 12 columns, got {len(rec)}")
            m = _BOX_RE.fullmatch(rec[1].strip())
            if m is None:
                raise DatasetError(f"{path}:{line_no}: expected a box '(x, y, w, h)', "
                                   f"got {rec[1]!r}")
            try:
                votes = tuple(int(v) for v in rec[2:])
            except ValueError as err:
                raise DatasetError(f"{path}:{line_no}: expected integer votes, got {rec[2:]}") \
                    from err
            box = (int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)))
            rows.append(FerPlusRow(rec[0].strip(), box, votes))
    return rows


def _read_gray(path: Path, box_xywh: tuple[int, int, int, int] | None = None) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    if box_xywh is not None:
        x, y, w, h = box_xywh
        if w > 0 and h > 0 and (x, y, w, h) != (0, 0, img.shape[1], img.shape[0]):
            img = img[y:y + h, x:x + w]
    return img


def load_ferplus(folder: Path, image_size: int = 48) -> FaceDataset:
    """Load one FER+ split (e.g. ``FER2013Train``), dropping unknown / NF majority images."""
    folder = Path(folder)
    label_csv = folder / "label.csv"
    if not label_csv.is_file():
        raise DatasetError(f"{folder}: expected a FER+ folder with label.csv, none found")
    kept = [r for r in parse_label_csv(label_csv) if r.keep]
    images = np.empty((len(kept), image_size, image_size), dtype=np.uint8)
    soft = np.empty((len(kept), len(FERPLUS_CLASSES)), dtype=np.float32)
    for i, row in enumerate(kept):
        img = _read_gray(folder / row.file, row.box_xywh)
        if img.shape != (image_size, image_size):
            img = cv2.resize(img, (image_size, image_size), interpolation=cv2.INTER_AREA)
        images[i] = img
        v = np.asarray(row.votes[:8], dtype=np.float32)
        soft[i] = v / v.sum()
    labels = np.asarray([int(np.argmax(r.votes[:8])) for r in kept], dtype=np.int64)
    return FaceDataset(images, labels, soft, FERPLUS_CLASSES, tuple(r.file for r in kept))


def load_image_folder(root: Path, class_names: tuple[str, ...] | None = None,
                      image_size: int = 48, class_map: dict[str, str] | None = None
                      ) -> FaceDataset:
    """Load ``root/<class>/*.png`` as grayscale with one-hot targets.

    ``class_names`` fixes the label order (a model's classes); without it the sub-folders are
    taken in alphabetical order. ``class_map`` renames folders to classes (``happy`` ->
    ``happiness``). Classes with no folder get no images; a folder that names no class raises
    :class:`DatasetError` naming it.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: expected an image folder, none found")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DatasetError(f"{root}: expected one sub-folder per class, got none")
    mapping = {f: (class_map or {}).get(f, f) for f in folders}
    names = tuple(class_names) if class_names else tuple(sorted(set(mapping.values())))
    unknown = sorted(f for f, c in mapping.items() if c not in names)
    if unknown:
        raise DatasetError(f"{root}: folders {unknown} name no class; expected one of "
                           f"{list(names)} (map them with a class map, e.g. happy=happiness)")
    imgs, labels, files = [], [], []
    for folder in folders:
        ci = names.index(mapping[folder])
        for p in sorted((root / folder).glob("*")):
            if p.suffix.lower() not in _IMAGE_EXTS:
                continue
            img = _read_gray(p)
            if img.shape != (image_size, image_size):
                img = cv2.resize(img, (image_size, image_size), interpolation=cv2.INTER_AREA)
            imgs.append(img)
            labels.append(ci)
            files.append(f"{folder}/{p.name}")
    if not imgs:
        raise DatasetError(f"{root}: no images found under class folders {folders}")
    lab = np.asarray(labels, dtype=np.int64)
    soft = np.eye(len(names), dtype=np.float32)[lab]
    return FaceDataset(np.stack(imgs), lab, soft, tuple(names), tuple(files))


def load_dataset(path: Path, layout: str = "auto", image_size: int = 48,
                 class_names: tuple[str, ...] | None = None,
                 class_map: dict[str, str] | None = None) -> FaceDataset:
    """Load by layout: ``ferplus`` (label.csv present), ``folder``, or ``auto`` (detect).

    ``class_names`` and ``class_map`` apply to the folder layout (see
    :func:`load_image_folder`)."""
    path = Path(path)
    if layout == "auto":
        layout = "ferplus" if (path / "label.csv").is_file() else "folder"
    if layout == "ferplus":
        return load_ferplus(path, image_size)
    if layout == "folder":
        return load_image_folder(path, class_names, image_size, class_map)
    raise DatasetError(f"layout: expected auto|ferplus|folder, got {layout!r}")


def load_dataset_cached(path: Path, cache_dir: Path | None, layout: str = "auto",
                        image_size: int = 48) -> FaceDataset:
    """:func:`load_dataset` with an ``.npz`` cache keyed by path, size and label.csv stat."""
    if cache_dir is None:
        return load_dataset(path, layout, image_size)
    path = Path(path).resolve()
    stat = (path / "label.csv").stat() if (path / "label.csv").is_file() else path.stat()
    key = hashlib.sha256(
        f"{path}|{layout}|{image_size}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"{path.name}_{key}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return FaceDataset(z["images"], z["labels"], z["soft"],
                           tuple(str(c) for c in z["class_names"]),
                           tuple(str(f) for f in z["files"]))
    ds = load_dataset(path, layout, image_size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, images=ds.images, labels=ds.labels, soft=ds.soft_targets,
             class_names=np.asarray(ds.class_names), files=np.asarray(ds.files))
    os.replace(tmp, cache)
    return ds


def default_shared_dir(repo_root: Path | None = None) -> Path:
    """``$CCTV_SHARED`` or ``../shared`` relative to the repository root."""
    env = os.environ.get("CCTV_SHARED")
    if env:
        return Path(env)
    root = repo_root or Path(__file__).resolve().parents[2]
    return (root / ".." / "shared").resolve()


def write_ferplus_folder(folder: Path, images: np.ndarray, votes: np.ndarray,
                         prefix: str = "fer") -> Path:
    """Write images (N, H, W) uint8 and votes (N, 10) in the FER+ layout (subsets, tests)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] != len(FERPLUS_VOTE_COLUMNS) or len(votes) != len(images):
        raise DatasetError(f"votes: expected shape ({len(images)}, "
                           f"{len(FERPLUS_VOTE_COLUMNS)}), got {votes.shape}")
    lines = []
    for i, (img, v) in enumerate(zip(images, votes, strict=True)):
        name = f"{prefix}{i:07d}.png"
        if not cv2.imwrite(str(folder / name), img):
            raise DatasetError(f"cannot write {folder / name}")
        h, w = img.shape[:2]
        lines.append(f'{name},"(0, 0, {w}, {h})",' + ",".join(str(int(x)) for x in v))
    (folder / "label.csv").write_text("\n".join(lines) + "\n")
    return folder
