"""Post-hoc decisions fitted on the calibration split when the emotion model is exported.

- **Logit adjustment** for the negative emotions the alert rules key on (Menon et al. 2021,
  "Long-tail learning via logit adjustment"): one additive bias on the negative classes'
  logits, the largest on a grid whose negative false-positive rate on neutral + happiness
  faces stays within ``max_fpr`` under the fitting condition (small faces through the camera).
- **Temperature** (Guo et al. 2017): one scalar, NLL-minimising over every condition pooled.
- **Non-face threshold**: the non-face probability above which only ``max_face_reject`` of
  real faces (pooled over conditions) fall, so rejection costs a known share of faces; never
  below ``NON_FACE_FLOOR`` (0.5, "not a face" more likely than every emotion together):
  FER+ faces are confidently faces (their 99th percentile is about 0.01), and a threshold that
  low would reject real camera crops that merely look unlike FER+.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engines.eval.emotion import NEGATIVE_CLASSES, negative_union
from engines.eval.metrics import softmax

BIAS_GRID = tuple(np.round(np.arange(0.0, 3.01, 0.1), 2))
NON_FACE_FLOOR = 0.5


def negative_bias_vector(class_names: Sequence[str], beta: float) -> np.ndarray:
    return np.asarray([beta if c in NEGATIVE_CLASSES else 0.0 for c in class_names], np.float32)


def fit_negative_bias(emotion_logits: dict[str, np.ndarray], labels: np.ndarray,
                      class_names: Sequence[str], max_fpr: float, report: str) -> dict:
    """Largest bias on the grid whose negative FPR stays <= ``max_fpr`` under every condition.

    The alert rules read every face, whatever its size and camera, so the false-positive
    budget must hold for each condition, not only for the one the recall target names.

    Args:
        emotion_logits: condition name -> (N, E) logits of the emotion outputs.
        labels: (N,) majority-vote class indices into ``class_names``.
        report: the condition whose recall and accuracy the result reports.

    Returns:
        ``{"beta", "recall", "false_positive_rate", "accuracy", "worst_fpr", "grid"}`` at the
        chosen bias (``beta`` 0.0 when even a zero bias exceeds ``max_fpr`` somewhere).
    """
    rows = []
    for beta in BIAS_GRID:
        bias = negative_bias_vector(class_names, float(beta))
        per = {}
        for name, lg in emotion_logits.items():
            preds = (lg + bias).argmax(1)
            neg = negative_union(labels, preds, class_names)
            per[name] = {"recall": neg["recall"],
                         "false_positive_rate": neg["false_positive_rate_neutral_happiness"],
                         "accuracy": float((preds == labels).mean())}
        worst = max((v["false_positive_rate"] or 0.0) for v in per.values())
        rows.append({"beta": float(beta), **per[report], "worst_fpr": worst,
                     "by_condition": per})
    ok = [r for r in rows if r["worst_fpr"] <= max_fpr]
    best = max(ok, key=lambda r: r["beta"]) if ok else rows[0]
    return {**{k: v for k, v in best.items() if k != "by_condition"}, "max_fpr": max_fpr,
            "report_condition": report, "grid": rows}


def fit_non_face_threshold(non_face_prob_faces: np.ndarray, max_face_reject: float,
                           floor: float = NON_FACE_FLOOR) -> float:
    """Threshold that rejects at most ``max_face_reject`` of the real faces given (N,), and
    is at least ``floor``."""
    if len(non_face_prob_faces) == 0:
        return 1.0
    q = float(np.quantile(non_face_prob_faces, 1.0 - max_face_reject, method="higher"))
    return float(min(1.0, max(floor, float(np.nextafter(np.float32(q), np.float32(2.0))))))


def pooled_probabilities(logits_by_condition: dict[str, np.ndarray], temperature: float
                         ) -> np.ndarray:
    return softmax(np.concatenate(list(logits_by_condition.values())), temperature)
