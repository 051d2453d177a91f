"""``bcers.gbdt``: the XGBoost and LightGBM objectives.

Both libraries are test dependencies (requirements-dev.txt), imported here unconditionally.

* Training: 50 rounds on a fixed synthetic dataset with ``BCEWithLogitsLoss()`` give the
  margins of the library's own binary objective (within 1e-4), with and without sample
  weights, in the native API and the scikit-learn one of each library. The builtin objectives
  estimate an intercept from the data (XGBoost's ``base_score``, LightGBM's
  ``boost_from_average``); a custom objective starts from margin 0 in both libraries. So the
  builtin runs are set to start at margin 0 too (``base_score=0.5``, which is margin 0 under
  the logistic link, and ``boost_from_average=False``): then the two differ only in who
  computes the derivatives.
* Derivatives: every way each library calls its objective, against an independent float64
  NumPy formula of the gradient and second derivative, weighted and not.
* The focal loss trains, with finite predictions; errors; the module imports neither library.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from typing import Any, Callable

import lightgbm as lgb
import numpy as np
import pytest
import sklearn.base
import xgboost as xgb

from bcers import BCELoss, BCEWithLogitsLoss, SigmoidFocalLoss
from bcers.gbdt import LightGBMObjective, XGBoostObjective, lightgbm_objective, xgboost_objective

ROUNDS = 50
MARGIN_TOL = 1e-4


def _dataset() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fixed binary task: 8 features, a nonlinear boundary, label noise; positive weights."""
    rng = np.random.default_rng(20250101)
    n = 2000
    x = rng.standard_normal((n, 8)).astype(np.float32)
    score = x[:, 0] + 0.5 * x[:, 1] ** 2 - 0.7 * x[:, 2] * x[:, 3] + rng.standard_normal(n)
    y = (score > 0.5).astype(np.float32)
    w = rng.uniform(0.2, 3.0, n).astype(np.float32)
    return x, y, w


X, Y, W = _dataset()

# One thread: deterministic, and the machine's cores are shared.
XGB_PARAMS = {"max_depth": 4, "eta": 0.3, "tree_method": "hist", "nthread": 1}
LGB_PARAMS = {
    "num_leaves": 15,
    "learning_rate": 0.1,
    "num_threads": 1,
    "deterministic": True,
    "seed": 0,
    "verbose": -1,
}


# ------------------------------------------------------------------------------------------
# Training: each API, builtin objective (objective=None) or custom; returns training margins.


def _xgb_native(objective: XGBoostObjective | None, weight: np.ndarray | None) -> np.ndarray:
    d = xgb.DMatrix(X, Y, weight=weight)
    # binary:logistic with base_score 0.5: margin 0 at the start, for the builtin objective
    # and the custom one alike (XGBoost estimates no intercept for a custom objective).
    params = {**XGB_PARAMS, "objective": "binary:logistic", "base_score": 0.5}
    booster = xgb.train(params, d, ROUNDS, obj=objective)
    return np.asarray(booster.predict(d, output_margin=True))


def _xgb_sklearn(objective: XGBoostObjective | None, weight: np.ndarray | None) -> np.ndarray:
    kw: dict[str, Any] = {} if objective is None else {"objective": objective}
    clf = xgb.XGBClassifier(
        n_estimators=ROUNDS,
        max_depth=4,
        learning_rate=0.3,
        tree_method="hist",
        n_jobs=1,
        base_score=0.5,
        **kw,
    )
    clf.fit(X, Y, sample_weight=weight)
    return np.asarray(clf.predict(X, output_margin=True))


def _lgb_native(objective: LightGBMObjective | None, weight: np.ndarray | None) -> np.ndarray:
    params: dict[str, Any] = {**LGB_PARAMS}
    if objective is None:
        params.update(objective="binary", boost_from_average=False)
    else:
        params["objective"] = objective
    booster = lgb.train(params, lgb.Dataset(X, Y, weight=weight), ROUNDS)
    return np.asarray(booster.predict(X, raw_score=True))


def _lgb_sklearn(objective: LightGBMObjective | None, weight: np.ndarray | None) -> np.ndarray:
    kw: dict[str, Any] = {"boost_from_average": False} if objective is None else {}
    clf = lgb.LGBMClassifier(
        n_estimators=ROUNDS,
        num_leaves=15,
        learning_rate=0.1,
        n_jobs=1,
        deterministic=True,
        random_state=0,
        verbose=-1,
        objective=objective,
        **kw,
    )
    clf.fit(X, Y, sample_weight=weight)
    return np.asarray(clf.predict(X, raw_score=True))


TRAINERS: dict[str, tuple[Callable[[Any, Any], np.ndarray], Callable[[Any], Any]]] = {
    "xgboost.train": (_xgb_native, xgboost_objective),
    "XGBClassifier": (_xgb_sklearn, xgboost_objective),
    "lightgbm.train": (_lgb_native, lightgbm_objective),
    "LGBMClassifier": (_lgb_sklearn, lightgbm_objective),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("api", list(TRAINERS))
def test_bce_objective_trains_as_the_builtin_one(api: str, weighted: bool) -> None:
    train, make = TRAINERS[api]
    weight = W if weighted else None
    builtin = train(None, weight)
    custom = train(make(BCEWithLogitsLoss()), weight)
    assert custom.shape == builtin.shape == Y.shape
    # The model learned something (50 rounds move the margins well away from 0).
    assert np.std(builtin) > 0.5
    np.testing.assert_allclose(custom, builtin, rtol=0, atol=MARGIN_TOL)
    if weighted:
        # The weights changed the model: the agreement above is not that of two runs that
        # both ignore them.
        assert np.abs(custom - train(None, None)).max() > 100 * MARGIN_TOL


# ------------------------------------------------------------------------------------------
# Derivatives against a float64 NumPy formula.


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def reference(
    loss: BCEWithLogitsLoss | SigmoidFocalLoss, x: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """d/dx and d2/dx2 of the per-sample loss, float64, written out by hand (for |x| <~ 30)."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    ls = loss.label_smoothing
    t = t * (1 - ls) + ls / 2
    p = _sigmoid(x)
    s = p * (1 - p)
    if isinstance(loss, SigmoidFocalLoss):
        # L = alpha_t * ce * q**gamma, ce = BCE with logits, q = 1 - p_t = p (1 - 2t) + t.
        a, g = loss.alpha, loss.gamma
        ce = -(t * np.log(p) + (1 - t) * np.log1p(-p))
        q = p * (1 - 2 * t) + t
        dq = s * (1 - 2 * t)
        d2q = dq * (1 - 2 * p)
        at = a * t + (1 - a) * (1 - t) if a >= 0 else 1.0
        grad = at * ((p - t) * q**g + ce * g * q ** (g - 1) * dq)
        hess = at * (
            s * q**g
            + 2 * (p - t) * g * q ** (g - 1) * dq
            + ce * g * (g - 1) * q ** (g - 2) * dq**2
            + ce * g * q ** (g - 1) * d2q
        )
        return grad, hess
    # L = (1 - t) x + c softplus(-x), c = 1 + (pos_weight - 1) t.
    pw = 1.0 if loss.pos_weight is None else float(np.asarray(loss.pos_weight).reshape(()))
    c = 1 + (pw - 1) * t
    return (1 - t) - c * (1 - p), c * s


LOSSES = {
    "bce": BCEWithLogitsLoss(),
    "bce-pos_weight": BCEWithLogitsLoss(pos_weight=np.array([3.0])),
    "bce-smoothed": BCEWithLogitsLoss(pos_weight=0.5, label_smoothing=0.1),
    "focal": SigmoidFocalLoss(),
    "focal-smoothed": SigmoidFocalLoss(alpha=0.7, gamma=1.5, label_smoothing=0.1),
    "focal-no-alpha": SigmoidFocalLoss(alpha=-1.0, gamma=0.5),
}


def _call(form: str, obj: Any, margin: np.ndarray, weight: np.ndarray | None) -> Any:
    """The objective called as the library calls it (``form``)."""
    if form == "xgboost-dmatrix":
        return obj(margin, xgb.DMatrix(np.zeros((Y.size, 1), np.float32), Y, weight=weight))
    if form == "xgboost-sklearn":
        # XGBoost's wrapper passes sample_weight by name, and only when there are weights.
        return obj(Y, margin) if weight is None else obj(Y, margin, sample_weight=weight)
    if form == "lightgbm-dataset":
        data = lgb.Dataset(np.zeros((Y.size, 1)), Y, weight=weight, params={"verbose": -1})
        return obj(margin, data.construct())
    assert form == "lightgbm-sklearn"
    return obj(Y, margin, weight)  # LightGBM's wrapper passes the weights, or None


FORMS = {
    "xgboost-dmatrix": (xgboost_objective, np.float32),
    "xgboost-sklearn": (xgboost_objective, np.float32),
    "lightgbm-dataset": (lightgbm_objective, np.float64),
    "lightgbm-sklearn": (lightgbm_objective, np.float64),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("name", list(LOSSES))
def test_derivatives_match_float64_reference(name: str, form: str, weighted: bool) -> None:
    loss = LOSSES[name]
    make, margin_dtype = FORMS[form]
    margin = np.random.default_rng(7).uniform(-8, 8, Y.size).astype(margin_dtype)
    weight = W if weighted else None
    grad, hess = _call(form, make(loss), margin, weight)
    # XGBoost's margins are float32; LightGBM's float64, computed in float32: LightGBM takes
    # float32 derivatives (and would convert any others).
    assert grad.dtype == hess.dtype == np.float32
    assert grad.shape == hess.shape == Y.shape
    ref_grad, ref_hess = reference(loss, margin.astype(np.float32), Y)
    w = 1.0 if weight is None else weight.astype(np.float64)
    np.testing.assert_allclose(grad, ref_grad * w, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(hess, ref_hess * w, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("name", list(LOSSES))
def test_float64_margins_give_float64_derivatives_to_xgboost(name: str) -> None:
    """XGBoost takes any float dtype: a float64 margin (a direct call) is computed in float64."""
    loss = LOSSES[name]
    margin = np.random.default_rng(8).uniform(-8, 8, Y.size)
    grad, hess = xgboost_objective(loss)(Y, margin, sample_weight=W)
    assert grad.dtype == hess.dtype == np.float64
    ref_grad, ref_hess = reference(loss, margin, Y)
    np.testing.assert_allclose(grad, ref_grad * W, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(hess, ref_hess * W, rtol=1e-10, atol=1e-14)


def test_xgboost_float32_margins_are_not_copied_to_another_dtype() -> None:
    grad, hess = xgboost_objective(BCEWithLogitsLoss())(Y, np.zeros(Y.size, np.float32))
    assert grad.dtype == hess.dtype == np.float32
    assert grad.flags.c_contiguous
    assert hess.flags.c_contiguous


# ------------------------------------------------------------------------------------------
# The focal loss trains.


@pytest.mark.parametrize("api", list(TRAINERS))
@pytest.mark.parametrize(
    "loss",
    [SigmoidFocalLoss(), SigmoidFocalLoss(alpha=0.6, gamma=5.0, label_smoothing=0.05)],
    ids=repr,
)
def test_focal_objective_trains(api: str, loss: SigmoidFocalLoss) -> None:
    train, make = TRAINERS[api]
    margin = train(make(loss), W)
    assert np.isfinite(margin).all()
    assert np.std(margin) > 0.1
    assert ((margin > 0) == (Y > 0.5)).mean() > 0.7  # chance is about 0.5


# ------------------------------------------------------------------------------------------
# Errors, and the rest of the contract.


@pytest.mark.parametrize("make", [xgboost_objective, lightgbm_objective])
def test_other_losses_are_refused(make: Callable[[Any], Any]) -> None:
    with pytest.raises(TypeError, match=r"BCEWithLogitsLoss or .*SigmoidFocalLoss, got BCELoss "):
        make(BCELoss())
    with pytest.raises(TypeError, match="got str"):
        make("binary:logistic")
    with pytest.raises(TypeError, match="got NoneType"):
        make(None)


@pytest.mark.parametrize("make", [xgboost_objective, lightgbm_objective])
def test_a_loss_weight_is_refused(make: Callable[[Any], Any]) -> None:
    with pytest.raises(ValueError, match=r"does not take a loss with a weight.*sample_weight"):
        make(BCEWithLogitsLoss(weight=np.ones(Y.size)))
    with pytest.raises(ValueError, match="weight"):
        make(SigmoidFocalLoss(weight=2.0))


@pytest.mark.parametrize("make", [xgboost_objective, lightgbm_objective])
def test_pos_weight_must_be_one_value(make: Callable[[Any], Any]) -> None:
    with pytest.raises(ValueError, match=r"pos_weight must hold one value.*\(2,\)"):
        make(BCEWithLogitsLoss(pos_weight=[1.0, 2.0]))
    assert "pos_weight=2.0" in repr(make(BCEWithLogitsLoss(pos_weight=[[2]])))


def test_multiclass_predictions_are_refused() -> None:
    y3 = (np.arange(Y.size) % 3).astype(np.float32)
    message = r"single-output binary objective.*shape \(2000, 3\)"
    clf = xgb.XGBClassifier(n_estimators=1, n_jobs=1, objective=xgboost_objective(LOSSES["focal"]))
    with pytest.raises(ValueError, match=message):
        clf.fit(X, y3)
    with pytest.raises(ValueError, match=message):
        lgb.train(
            {**LGB_PARAMS, "objective": lightgbm_objective(BCEWithLogitsLoss()), "num_class": 3},
            lgb.Dataset(X, y3),
            1,
        )
    with pytest.raises(ValueError, match=r"one-dimensional, got shape \(4, 1\)"):
        xgboost_objective(BCEWithLogitsLoss())(np.zeros(4), np.zeros((4, 1)))


def test_call_errors_go_through_bcers() -> None:
    obj = xgboost_objective(BCEWithLogitsLoss())
    with pytest.raises(ValueError, match="Target size"):
        obj(np.zeros(3, np.float32), np.zeros(4, np.float32))  # labels of another length
    with pytest.raises(TypeError, match="input must be an array of float"):
        obj(np.zeros(3), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match=r"sample_weight.*DMatrix"):
        obj(np.zeros(3, np.float32), xgb.DMatrix(np.zeros((3, 1))), sample_weight=np.ones(3))


def test_pickles_and_clones() -> None:
    obj = xgboost_objective(SigmoidFocalLoss(alpha=0.4, gamma=1.0, label_smoothing=0.2))
    again = pickle.loads(pickle.dumps(obj))
    assert (
        repr(again)
        == repr(obj)
        == ("XGBoostObjective(SigmoidFocalLoss(alpha=0.4, gamma=1.0, label_smoothing=0.2))")
    )
    margin = np.linspace(-3, 3, Y.size, dtype=np.float32)
    for a, b in zip(obj(Y, margin), again(Y, margin)):
        np.testing.assert_array_equal(a, b)
    clf = sklearn.base.clone(xgb.XGBClassifier(objective=obj))
    assert repr(clf.get_params()["objective"]) == repr(obj)
    lobj = lightgbm_objective(BCEWithLogitsLoss(pos_weight=2.0))
    assert (
        repr(pickle.loads(pickle.dumps(lobj)))
        == "LightGBMObjective(BCEWithLogitsLoss(pos_weight=2.0))"
    )


def test_importing_bcers_imports_neither_library() -> None:
    code = (
        "import sys, bcers, bcers.gbdt\n"
        "bcers.gbdt.xgboost_objective(bcers.BCEWithLogitsLoss())\n"
        "bcers.gbdt.lightgbm_objective(bcers.SigmoidFocalLoss())\n"
        "loaded = {'xgboost', 'lightgbm', 'sklearn'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
