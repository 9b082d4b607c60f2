"""Estimator names -> classes, checked once per name."""

from __future__ import annotations

import difflib
import functools
import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sklearn.base import BaseEstimator, is_classifier, is_regressor

from cvjobs.allowlist import DEFAULT_PACKAGES, NotAllowedError, check_allowed
from cvjobs.job import UserError, quote_names

# Short names for the common estimators; anything else is given as a dotted path. A fixed table (not
# sklearn.utils.all_estimators) because that walks every sklearn module, too slow for each job.
ESTIMATORS: dict[str, str] = {
    "DecisionTreeClassifier": "sklearn.tree.DecisionTreeClassifier",
    "DecisionTreeRegressor": "sklearn.tree.DecisionTreeRegressor",
    "ElasticNet": "sklearn.linear_model.ElasticNet",
    "ExtraTreesClassifier": "sklearn.ensemble.ExtraTreesClassifier",
    "ExtraTreesRegressor": "sklearn.ensemble.ExtraTreesRegressor",
    "GaussianNB": "sklearn.naive_bayes.GaussianNB",
    "GradientBoostingClassifier": "sklearn.ensemble.GradientBoostingClassifier",
    "GradientBoostingRegressor": "sklearn.ensemble.GradientBoostingRegressor",
    "HistGradientBoostingClassifier": "sklearn.ensemble.HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor": "sklearn.ensemble.HistGradientBoostingRegressor",
    "KNeighborsClassifier": "sklearn.neighbors.KNeighborsClassifier",
    "KNeighborsRegressor": "sklearn.neighbors.KNeighborsRegressor",
    "Lasso": "sklearn.linear_model.Lasso",
    "LinearRegression": "sklearn.linear_model.LinearRegression",
    "LinearSVC": "sklearn.svm.LinearSVC",
    "LinearSVR": "sklearn.svm.LinearSVR",
    "LogisticRegression": "sklearn.linear_model.LogisticRegression",
    "MLPClassifier": "sklearn.neural_network.MLPClassifier",
    "MLPRegressor": "sklearn.neural_network.MLPRegressor",
    "RandomForestClassifier": "sklearn.ensemble.RandomForestClassifier",
    "RandomForestRegressor": "sklearn.ensemble.RandomForestRegressor",
    "Ridge": "sklearn.linear_model.Ridge",
    "RidgeClassifier": "sklearn.linear_model.RidgeClassifier",
    "SGDClassifier": "sklearn.linear_model.SGDClassifier",
    "SGDRegressor": "sklearn.linear_model.SGDRegressor",
    "SVC": "sklearn.svm.SVC",
    "SVR": "sklearn.svm.SVR",
}
_BY_LOWER_NAME = {name.lower(): name for name in ESTIMATORS}
# model.estimator "auto": chosen by the task; both take missing values and need no scaling.
AUTO_ESTIMATORS = {
    "classification": "HistGradientBoostingClassifier",
    "regression": "HistGradientBoostingRegressor",
}


@dataclass(frozen=True)
class EstimatorSpec:
    """A resolved estimator: ``name`` as recorded in manifests, ``path`` it imports from."""

    name: str
    path: str
    cls: type[BaseEstimator]
    task: str  # "classification" | "regression"
    params: frozenset[str]  # the constructor's parameters: get_params(deep=False)


@functools.lru_cache(maxsize=64)
def resolve_estimator(name: str, allowed_packages: frozenset[str] = DEFAULT_PACKAGES) -> EstimatorSpec:
    """Resolve a short name (case-insensitive) or a dotted path ``package.module.Class`` from one of
    ``allowed_packages``, which is checked before anything is imported."""
    name = name.strip()
    if "." not in name:
        canonical = _BY_LOWER_NAME.get(name.lower())
        if canonical is None:
            close = difflib.get_close_matches(name, ESTIMATORS, n=2, cutoff=0.5)
            names = (
                f"did you mean {' or '.join(map(repr, close))}"
                if close
                else (f"use one of {quote_names(sorted(ESTIMATORS), 40)}")
            )
            raise UserError(
                f"model.estimator: unknown estimator {name!r}: {names}; any other estimator by its import path, "
                "such as 'sklearn.linear_model.Perceptron'"
            )
        name, path = canonical, ESTIMATORS[canonical]
    else:
        path = name
        try:
            check_allowed(path, allowed_packages)
        except NotAllowedError as exc:
            raise UserError(f"model.estimator: {exc}") from None
    module_name, _, class_name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"model.estimator: cannot import estimator {path!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator) and hasattr(cls, "fit")):
        raise UserError(
            f"model.estimator: {path!r} is not a scikit-learn estimator "
            "(expected a class deriving from sklearn.base.BaseEstimator with a fit method)"
        )
    try:
        instance = cls()
    except TypeError as exc:
        raise UserError(f"model.estimator: {name} cannot be built with default parameters: {exc}") from None
    if is_classifier(instance):
        task = "classification"
    elif is_regressor(instance):
        task = "regression"
    else:
        raise UserError(
            f"model.estimator: {name} is neither a classifier nor a regressor: cross-validated scores need one"
        )
    return EstimatorSpec(
        name=name, path=path, cls=cls, task=task, params=frozenset(instance.get_params(deep=False))
    )


def check_parameter_names(spec: EstimatorSpec, names: Iterable[str]) -> None:
    """Refuse hyperparameter names the estimator does not have: every candidate would fail on them."""
    known = sorted(spec.cls().get_params(deep=True))
    unknown = [name for name in names if name not in known]
    if unknown:
        described = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            described.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UserError(
            f"model.params/model.search_space: {spec.name} has no parameter(s) {', '.join(described)}: "
            f"its parameters are {quote_names(known, 60)}"
        )


def check_parameter_values(spec: EstimatorSpec, fixed: dict[str, Any], search: dict[str, list[Any]]) -> None:
    """Refuse values the estimator's own parameter validation rejects (scikit-learn's
    ``_parameter_constraints``): the fixed params would fail every candidate, a searched value its
    candidates. Estimators without that validation (outside scikit-learn) are checked when fitted."""
    if not hasattr(spec.cls, "_validate_params"):
        return
    _validated(spec, fixed, "model.params")
    for name, values in search.items():
        for value in values:
            _validated(spec, {**fixed, name: value}, f"model.search_space.{name}")


def _validated(spec: EstimatorSpec, params: dict[str, Any], field: str) -> None:
    try:
        estimator = spec.cls().set_params(**params)
        estimator._validate_params()
    except (ValueError, TypeError) as exc:  # InvalidParameterError is both
        raise UserError(f"{field}: {spec.name} refuses it: {exc}") from None


def make_estimator(
    spec: EstimatorSpec, params: dict[str, Any], random_state: int
) -> tuple[BaseEstimator, dict[str, Any]]:
    """Build the estimator with ``params``; return it and the parameters actually set.

    ``random_state`` is set only where the estimator has one and the user did not choose it.
    """
    if "random_state" in spec.params and "random_state" not in params:
        params = {**params, "random_state": random_state}
    if spec.params.issuperset(params):
        # As clone() builds estimators: a constructor only stores its parameters (values are checked
        # by fit), and it costs a fraction of set_params, which looks the parameters up every time.
        return spec.cls(**params), params
    estimator = spec.cls()
    try:  # names the constructor lacks: set_params refuses them, or takes them its own way
        estimator.set_params(**params)
    except ValueError as exc:
        raise UserError(f"estimator {spec.name} rejected hyperparameters: {exc}") from None
    return estimator, params
