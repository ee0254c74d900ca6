"""Learned predictors over the GP's terminals: the baseline an evolved formula must beat.

A NAS researcher with L labelled cells compares an evolved proxy with the obvious use of
those labels: a regression model over the same per-cell values (issue 26). This module fits
a scikit-learn ``RandomForestRegressor`` or ``GradientBoostingRegressor`` on exactly the
columns a proxy program may use (:func:`feature_matrix`: the problem's proxy columns in
sorted order, the ``ProxyTableScorer``'s terminals), chooses its hyper-parameters and the
target (accuracy, or the logit of accuracy/100 as VKDNW's authors fit) by Kendall τ on
*validation* cells only (:func:`fit_learned`), then refits the chosen setting on train +
validation, so it has seen exactly the labels the GP saw. ``rank_features`` maps each
column to its within-table rank in [0, 1] (as the proxy op ``rank``), which makes a model
carry over to cells whose proxies were computed on another scale (another dataset's
images, another space).

Example
-------
>>> cfg = LearnedConfig(model="forest", seed=0)                        # doctest: +SKIP
>>> m = fit_learned(X_train, y_train, X_val, y_val, cfg)                # doctest: +SKIP
>>> scores = predict_learned(m, X_test)                                          # doctest: +SKIP

Models are not saved (no pickle: a saved model would be JSON of the trees' arrays).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eznas_store.config import check_seed
from eznas_store.errors import ConfigError
from eznas_store.fitness.correlations import kendall_tau
from eznas_store.fitness.problems import ProxyProblem

__all__ = ["LEARNED_MODELS", "LearnedConfig", "LearnedModel", "feature_matrix", "fit_learned",
           "fit_problems", "predict_learned", "rank_columns"]

LEARNED_MODELS = ("forest", "boosting")
TARGETS = ("accuracy", "logit", "choose")


@dataclass(frozen=True)
class LearnedConfig:
    """One learned predictor: the model, its small validation grid and its seed.

    ``target``: "accuracy", "logit" (of accuracy / 100) or "choose" (both, on validation).
    """

    model: str = "forest"
    seed: int = 0
    rank_features: bool = False
    target: str = "choose"
    n_estimators: int = 300
    forest_max_features: tuple[Any, ...] = (1.0, 0.33, "sqrt")
    forest_min_samples_leaf: tuple[int, ...] = (1, 3)
    boosting_learning_rate: tuple[float, ...] = (0.05, 0.1)
    boosting_max_depth: tuple[int, ...] = (2, 3)

    def __post_init__(self) -> None:
        if self.model not in LEARNED_MODELS:
            raise ConfigError(f"learned model must be one of {LEARNED_MODELS}, got {self.model!r}")
        if self.target not in TARGETS:
            raise ConfigError(f"learned target must be one of {TARGETS}, got {self.target!r}")
        check_seed(self.seed, "seed")
        if not isinstance(self.n_estimators, int) or self.n_estimators < 1:
            raise ConfigError(f"n_estimators must be a positive integer, got {self.n_estimators!r}")
        grids = ((self.forest_max_features, self.forest_min_samples_leaf) if self.model == "forest"
                 else (self.boosting_learning_rate, self.boosting_max_depth))
        if not all(len(g) for g in grids):
            raise ConfigError(f"the {self.model} grid has an empty axis")

    def grid(self) -> list[dict[str, Any]]:
        """The hyper-parameter settings the validation cells choose among."""
        if self.model == "forest":
            return [{"max_features": f, "min_samples_leaf": m}
                    for f, m in itertools.product(self.forest_max_features, self.forest_min_samples_leaf)]
        return [{"learning_rate": r, "max_depth": d}
                for r, d in itertools.product(self.boosting_learning_rate, self.boosting_max_depth)]


@dataclass(frozen=True, eq=False)
class LearnedModel:
    """A fitted predictor: the estimator refit on train + validation, and what was chosen."""

    estimator: Any
    features: tuple[str, ...]
    rank_features: bool
    params: dict[str, Any]
    target: str
    validation_tau: float
    tried: list[dict[str, Any]] = field(default_factory=list)


def rank_columns(x: np.ndarray) -> np.ndarray:
    """Each column's average rank within the rows, scaled to [0, 1] (ties share a rank), as the
    proxy op ``rank`` does; a single row is 0.5."""
    from scipy.stats import rankdata

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        return np.full_like(x, 0.5)
    return (rankdata(x, axis=0) - 1.0) / (n - 1)


def feature_matrix(problem: ProxyProblem, features: Sequence[str] | None = None, *,
                   rank: bool = False) -> tuple[np.ndarray, tuple[str, ...]]:
    """(n, F) values of ``features`` (default: all the problem's columns, sorted: the GP's
    terminals) for the problem's networks; ``rank``: within-problem ranks in [0, 1]."""
    names = tuple(sorted(problem.columns)) if features is None else tuple(features)
    missing = [f for f in names if f not in problem.columns]
    if missing:
        raise ConfigError(f"problem {problem.name} has no column {', '.join(missing)}")
    x = np.stack([problem.columns[f] for f in names], axis=1) if names else np.empty((len(problem), 0))
    return (rank_columns(x) if rank else x), names


def _target(y: np.ndarray, kind: str) -> np.ndarray:
    if kind == "accuracy":
        return np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(y, dtype=np.float64) / 100.0, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _estimator(cfg: LearnedConfig, params: dict[str, Any]):
    if cfg.model == "forest":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_estimators=cfg.n_estimators, random_state=cfg.seed, n_jobs=1, **params)
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(n_estimators=cfg.n_estimators, random_state=cfg.seed, subsample=1.0, **params)


def _check_xy(x: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ConfigError(f"{what}: features must be (n, F) and accuracies (n,), got {x.shape} and {y.shape}")
    if x.shape[0] < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ConfigError(f"{what}: needs at least 2 cells with finite features and accuracies")
    return x, y


def fit_learned(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                cfg: LearnedConfig, *, features: Sequence[str] = ()) -> LearnedModel:
    """Choose the setting (grid x target) with the best Kendall τ on the validation cells, each
    fitted on the train cells; refit it on train + validation. The validation cells are the
    only ones any choice looks at. Features are used as given (rank them with the problem:
    :func:`feature_matrix`)."""
    x_train, y_train = _check_xy(x_train, y_train, "training cells")
    x_val, y_val = _check_xy(x_val, y_val, "validation cells")
    targets = ("accuracy", "logit") if cfg.target == "choose" else (cfg.target,)
    tried, best = [], None
    for target, params in itertools.product(targets, cfg.grid()):
        est = _estimator(cfg, params).fit(x_train, _target(y_train, target))
        tau = kendall_tau(est.predict(x_val), y_val)
        tau = tau if math.isfinite(tau) else -math.inf
        tried.append({"target": target, **params, "validation_tau": tau})
        if best is None or tau > best[0]:
            best = (tau, target, params)
    tau, target, params = best
    est = _estimator(cfg, params).fit(np.concatenate([x_train, x_val]),
                                      _target(np.concatenate([y_train, y_val]), target))
    return LearnedModel(est, tuple(features), cfg.rank_features, dict(params), target, float(tau), tried)


def predict_learned(model: LearnedModel, x: np.ndarray) -> np.ndarray:
    """Predicted scores (higher: better) of cells' feature rows."""
    return np.asarray(model.estimator.predict(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def fit_problems(train: ProxyProblem, validation: ProxyProblem, cfg: LearnedConfig,
                 features: Sequence[str] | None = None) -> LearnedModel:
    """:func:`fit_learned` on the columns of a problem's train and validation parts (features
    ranked within each part when ``cfg.rank_features``; default features: the columns the two
    parts share, sorted)."""
    names = tuple(sorted(set(train.columns) & set(validation.columns))) if features is None else tuple(features)
    xt, _ = feature_matrix(train, names, rank=cfg.rank_features)
    xv, _ = feature_matrix(validation, names, rank=cfg.rank_features)
    return fit_learned(xt, train.accuracy, xv, validation.accuracy, cfg, features=names)
