"""The pipeline every job fits: a ColumnTransformer (numeric: impute, scale; categorical: impute,
encode), optional feature selection, then the estimator, all fitted inside each fold on its training
rows only, as scikit-learn's Pipeline does in ``cross_validate``.

Step names are fixed so that hyperparameters can address them as scikit-learn does:
``preprocess__numeric__impute__strategy``, ``preprocess__categorical__encode__min_frequency``,
``select__k``, ``estimator__C`` (a bare name such as ``C`` is the estimator's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import (
    SelectKBest,
    SelectPercentile,
    VarianceThreshold,
    f_classif,
    f_regression,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

from cvjobs.job import UserError

NUMERIC_IMPUTERS = ("auto", "mean", "median", "most_frequent", "constant", "none")
SCALERS = {
    "StandardScaler": StandardScaler,
    "MinMaxScaler": MinMaxScaler,
    "RobustScaler": RobustScaler,
    "MaxAbsScaler": MaxAbsScaler,
    "none": None,
}
CATEGORICAL_IMPUTERS = ("most_frequent", "constant", "none")
ENCODERS = ("OneHotEncoder", "OrdinalEncoder")
SELECTORS = ("none", "SelectKBest", "SelectPercentile", "VarianceThreshold")
MISSING_CATEGORY = "missing"  # what categorical impute "constant" fills in


@dataclass(frozen=True)
class Preprocessing:
    """``model.preprocessing``: which step does what; their parameters are hyperparameters."""

    numeric_impute: str = "auto"  # auto: none for estimators that take NaN, else mean
    scale: str = "StandardScaler"
    categorical_impute: str = "most_frequent"
    encode: str = "OneHotEncoder"
    select: str = "none"

    @classmethod
    def parse(cls, spec: Any, scaler: str = "StandardScaler") -> Preprocessing:
        """From the JSON ``{"numeric": {"impute", "scale"}, "categorical": {"impute", "encode"}, "select"}``;
        ``scaler`` (the older model.scaler) is the scale unless the spec sets one."""
        spec = spec or {}
        if not isinstance(spec, dict) or set(spec) - {"numeric", "categorical", "select"}:
            raise UserError(
                f"model.preprocessing: {spec!r} must be an object with numeric, categorical and select"
            )
        numeric, categorical = spec.get("numeric") or {}, spec.get("categorical") or {}
        prep = cls(
            numeric_impute=numeric.get("impute") or "auto",
            scale=numeric.get("scale") or scaler,
            categorical_impute=categorical.get("impute") or "most_frequent",
            encode=categorical.get("encode") or "OneHotEncoder",
            select=spec.get("select") or "none",
        )
        for where, value, allowed in (
            ("numeric.impute", prep.numeric_impute, NUMERIC_IMPUTERS),
            ("numeric.scale", prep.scale, tuple(SCALERS)),
            ("categorical.impute", prep.categorical_impute, CATEGORICAL_IMPUTERS),
            ("categorical.encode", prep.encode, ENCODERS),
            ("select", prep.select, SELECTORS),
        ):
            if value not in allowed:
                raise UserError(f"model.preprocessing.{where}: {value!r} must be one of {', '.join(allowed)}")
        return prep

    def as_dict(self) -> dict[str, Any]:
        return {
            "numeric": {"impute": self.numeric_impute, "scale": self.scale},
            "categorical": {"impute": self.categorical_impute, "encode": self.encode},
            "select": self.select,
        }


def takes_nan(estimator: BaseEstimator) -> bool:
    """Whether the estimator fits on missing values itself (HistGradientBoosting, recent trees)."""
    try:
        return bool(estimator.__sklearn_tags__().input_tags.allow_nan)
    except AttributeError:
        return False


def numeric_steps(estimator: BaseEstimator, prep: Preprocessing) -> list[tuple[str, Any]]:
    """``impute`` then ``scale``, either of them ``"passthrough"`` when it does nothing."""
    impute = prep.numeric_impute
    if impute == "auto":
        impute = "none" if takes_nan(estimator) else "mean"
    scaler = SCALERS[prep.scale]
    return [
        ("impute", "passthrough" if impute == "none" else SimpleImputer(strategy=impute)),
        ("scale", scaler() if scaler else "passthrough"),
    ]


def selection_steps(prep: Preprocessing, task: str) -> list[tuple[str, Any]]:
    """The ``select`` step, if the preprocessing has one."""
    if prep.select == "none":
        return []
    score_func = f_classif if task == "classification" else f_regression
    selector = {
        "SelectKBest": lambda: SelectKBest(score_func),
        "SelectPercentile": lambda: SelectPercentile(score_func),
        "VarianceThreshold": VarianceThreshold,
    }[prep.select]()
    return [("select", selector)]


def build_pipeline(
    estimator: BaseEstimator,
    prep: Preprocessing,
    numeric: list[str] | list[int],
    categorical: list[str],
    task: str,
) -> Pipeline:
    """``preprocess`` (a ColumnTransformer) -> optional ``select`` -> ``estimator``. Columns are
    named, or given by position when the pipeline is fitted on an array."""
    transformers: list[tuple[str, Any, list[str] | list[int]]] = []
    if numeric:
        transformers.append(("numeric", Pipeline(numeric_steps(estimator, prep)), numeric))
    if categorical:
        impute = prep.categorical_impute
        imputer: Any = (
            "passthrough"
            if impute == "none"
            else SimpleImputer(strategy=impute, fill_value=MISSING_CATEGORY if impute == "constant" else None)
        )
        encoder: Any = (
            OneHotEncoder(handle_unknown="ignore", sparse_output=False)
            if prep.encode == "OneHotEncoder"
            else OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
        )
        transformers.append(
            ("categorical", Pipeline([("impute", imputer), ("encode", encoder)]), categorical)
        )
    return Pipeline(
        [
            ("preprocess", ColumnTransformer(transformers, remainder="drop")),
            *selection_steps(prep, task),
            ("estimator", estimator),
        ]
    )


def numeric_transformers(estimator: BaseEstimator, prep: Preprocessing, task: str) -> list[Any]:
    """The steps of ``build_pipeline`` before the estimator, for a table of numeric columns only,
    without its ColumnTransformer: the numeric steps that do something, then ``select``.

    Fitted one after the other, each on the output of the one before (as a Pipeline does), starting
    from the very array the ColumnTransformer hands its numeric steps (``X[:, numeric]``), they give
    the estimator the same numbers as the full pipeline: the ColumnTransformer only adds a copy of
    their output (same values, same memory order) and, on every call, its validation, which is most
    of a small fit's time."""
    steps = [step for _, step in numeric_steps(estimator, prep) if step != "passthrough"]
    return [*steps, *(step for _, step in selection_steps(prep, task))]
