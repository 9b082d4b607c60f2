"""A run's tuning history in the shape of scikit-learn's ``GridSearchCV.cv_results_``: one list per
key, one entry per candidate, so that a user can load it with ``pandas.DataFrame(cv_results)``.

JSON has no NaN: where scikit-learn writes NaN (a failed candidate's scores), these lists hold null.
"""

from __future__ import annotations

from typing import Any


def cv_results(history: list[dict[str, Any]], metrics: list[str]) -> dict[str, list[Any]]:
    """``cv_results_`` of the candidates in ``history`` (in proposal order) for each of ``metrics``."""
    names = sorted({name for entry in history for name in entry["params"]})
    results: dict[str, list[Any]] = {
        "candidate": [entry["id"] for entry in history],
        "status": [entry["status"] for entry in history],
        "params": [entry["params"] for entry in history],
        **{f"param_{name}": [entry["params"].get(name) for entry in history] for name in names},
    }
    columns: dict[str, list[Any]] = {}
    for position, entry in enumerate(history):
        cv = entry.get("cv") or {}
        times = {
            "mean_fit_time": cv.get("fit_time_mean"),
            "std_fit_time": cv.get("fit_time_std"),
            "mean_score_time": cv.get("score_time_mean"),
            "std_score_time": cv.get("score_time_std"),
        }
        for key, value in times.items():
            columns.setdefault(key, [None] * len(history))[position] = value
        for metric in metrics:
            scores = (cv.get("metrics") or {}).get(metric)
            if scores is None:
                continue
            for prefix, folds, summary in (
                ("test", scores["folds"], (scores["mean"], scores["std"], scores["stderr"])),
                (
                    "train",
                    scores.get("train_folds"),
                    (scores.get("train_mean"), scores.get("train_std"), None),
                ),
            ):
                if folds is None:
                    continue
                for split, value in enumerate(folds):
                    columns.setdefault(f"split{split}_{prefix}_{metric}", [None] * len(history))[position] = (
                        value
                    )
                for stat, value in zip(("mean", "std", "stderr"), summary, strict=True):
                    if value is not None:
                        columns.setdefault(f"{stat}_{prefix}_{metric}", [None] * len(history))[position] = (
                            value
                        )
    for metric in metrics:
        means = columns.get(f"mean_test_{metric}")
        if means is not None:
            columns[f"rank_test_{metric}"] = ranks(means)
    return {**results, **dict(sorted(columns.items(), key=lambda item: _order(item[0])))}


def ranks(means: list[float | None]) -> list[int]:
    """Rank 1 for the highest mean, ties sharing the lowest rank, candidates without a score last
    (scikit-learn's ``rankdata(-scores, method="min")``)."""
    scored = [mean for mean in means if mean is not None]
    return [
        1 + sum(other > mean for other in scored) if mean is not None else len(scored) + 1 for mean in means
    ]


def _order(key: str) -> tuple[int, str]:
    # Times first, then each metric's splits, means, stds and ranks, as cv_results_ lists them.
    return (0 if key.endswith("_time") else 1, key)
