"""Custom objectives for gradient boosting: XGBoost and LightGBM trained on bcers's logit losses.

:func:`xgboost_objective` and :func:`lightgbm_objective` turn a :class:`bcers.BCEWithLogitsLoss`
or :class:`bcers.SigmoidFocalLoss` (its ``pos_weight``, ``alpha``, ``gamma`` and
``label_smoothing``) into the custom objective each library takes, in both of its APIs::

    import xgboost, lightgbm
    from bcers import BCEWithLogitsLoss, SigmoidFocalLoss
    from bcers.gbdt import lightgbm_objective, xgboost_objective

    obj = xgboost_objective(BCEWithLogitsLoss(pos_weight=3.0))
    booster = xgboost.train({"objective": "binary:logistic"}, dtrain, 100, obj=obj)
    clf = xgboost.XGBClassifier(objective=obj).fit(X, y, sample_weight=w)

    obj = lightgbm_objective(SigmoidFocalLoss(alpha=0.25, gamma=2.0))
    booster = lightgbm.train({"objective": obj}, lightgbm.Dataset(X, y), 100)
    clf = lightgbm.LGBMClassifier(objective=obj).fit(X, y, sample_weight=w)

Each call returns the gradient and the second derivative, per sample, of the loss with respect
to the raw margin (the model's output before the sigmoid), from one pass of bcers's engine.
Neither library is imported by this module, nor a dependency of bcers: the objective
recognises the library's own arguments when it is called.

What the libraries do around a custom objective, and what to set:

- The model starts from margin 0 only if told to. With a custom objective XGBoost does not
  estimate ``base_score`` (the intercept); with ``"objective": "binary:logistic"`` in the
  parameters (what ``XGBClassifier`` sets for a callable objective) its default 0.5 is margin
  0, and ``predict`` returns probabilities. LightGBM starts a custom objective at 0 (its
  built-in ``binary`` starts at the log-odds of the mean label unless
  ``boost_from_average=False``). For an intercept, give a ``base_margin`` / ``init_score``.
- ``LGBMClassifier.predict_proba`` cannot apply a link to a custom objective: it warns and
  returns raw margins. Use ``predict(X, raw_score=True)`` and apply the sigmoid.
- The focal loss is not convex in the margin: its second derivative is negative for badly
  misclassified samples (a margin beyond about 2.8 on the wrong side at ``gamma=2``). The
  objective returns it as it is, unclipped. What guards the leaf values against small or
  negative hessian sums is the library's: XGBoost's ``reg_lambda`` (1 by default) and
  ``min_child_weight``, LightGBM's ``min_sum_hessian_in_leaf`` and ``lambda_l2`` (0 by
  default: raise it if a focal model diverges).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import numpy.typing as npt

from . import gpu as _gpu
from ._functional import (
    binary_cross_entropy_with_logits_derivatives,
    sigmoid_focal_loss_derivatives,
)
from ._loss import BCELoss, BCEWithLogitsLoss, SigmoidFocalLoss

__all__ = ["LightGBMObjective", "XGBoostObjective", "lightgbm_objective", "xgboost_objective"]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_Array = npt.NDArray[np.floating[Any]]


def _is_instance(value: Any, module: str, name: str) -> bool:
    """Whether ``value`` is a ``module.name``, without importing ``module``: an object of it can
    exist only once the library has been imported."""
    library = sys.modules.get(module)
    return library is not None and isinstance(value, getattr(library, name))


def _single(value: Any, name: str) -> float | None:
    """A ``pos_weight`` as one float: a single-output objective has one class."""
    if value is None:
        return None
    if type(value) is _gpu.Array:
        value = value.numpy()
    a = np.asarray(value)
    if a.size != 1:
        raise ValueError(
            f"{name} must hold one value for a single-output objective, got shape {a.shape}"
        )
    return float(a.reshape(()))


class _Objective:
    """What the two objectives share: the loss's parameters, read once, and the per-sample
    derivatives. Holds plain floats only, so that it pickles and deep-copies (scikit-learn's
    ``clone``)."""

    _caller = ""

    def __init__(self, loss: BCEWithLogitsLoss | SigmoidFocalLoss) -> None:
        if not isinstance(loss, (BCEWithLogitsLoss, SigmoidFocalLoss)):
            why = ""
            if isinstance(loss, BCELoss):
                why = " (BCELoss takes probabilities; a boosted model's outputs are logits)"
            raise TypeError(
                f"{self._caller} takes a bcers.BCEWithLogitsLoss or bcers.SigmoidFocalLoss, got "
                f"{type(loss).__name__}{why}"
            )
        if loss.weight is not None:
            raise ValueError(
                f"{self._caller} does not take a loss with a weight: give per-sample weights "
                "to the library (the dataset's weight, or fit's sample_weight), which hands "
                "them to the objective"
            )
        self.focal = isinstance(loss, SigmoidFocalLoss)
        self.alpha = loss.alpha if isinstance(loss, SigmoidFocalLoss) else 0.0
        self.gamma = loss.gamma if isinstance(loss, SigmoidFocalLoss) else 0.0
        self.pos_weight = (
            _single(loss.pos_weight, "pos_weight") if isinstance(loss, BCEWithLogitsLoss) else None
        )
        self.label_smoothing = loss.label_smoothing

    def __repr__(self) -> str:
        if self.focal:
            parts = [f"alpha={self.alpha!r}", f"gamma={self.gamma!r}"]
        else:
            parts = [] if self.pos_weight is None else [f"pos_weight={self.pos_weight!r}"]
        if self.label_smoothing != 0.0:
            parts.append(f"label_smoothing={self.label_smoothing!r}")
        loss = "SigmoidFocalLoss" if self.focal else "BCEWithLogitsLoss"
        return f"{type(self).__name__}({loss}({', '.join(parts)}))"

    def _derivatives(self, margin: Any, label: Any, weight: Any) -> tuple[_Array, _Array]:
        """The gradient and second derivative of the summed loss with respect to each margin,
        each times its sample's weight (None: unweighted), in the margin's dtype."""
        shape = np.shape(margin)
        if len(shape) != 1:
            raise ValueError(
                f"{self._caller} is a single-output binary objective: the predictions must be "
                f"one-dimensional, got shape {shape} (multi-class and multi-target models are "
                "not supported)"
            )
        if self.focal:
            d = sigmoid_focal_loss_derivatives(
                margin,
                label,
                self.alpha,
                self.gamma,
                "sum",
                weight,
                value=False,
                hess=True,
                label_smoothing=self.label_smoothing,
            )
        else:
            pos_weight = None
            if self.pos_weight is not None:
                dtype = margin.dtype if isinstance(margin, np.ndarray) else None
                pos_weight = np.asarray(self.pos_weight, dtype)
            d = binary_cross_entropy_with_logits_derivatives(
                margin,
                label,
                weight,
                pos_weight,
                "sum",
                value=False,
                hess=True,
                label_smoothing=self.label_smoothing,
            )
        return d.grad, d.hess


class XGBoostObjective(_Objective):
    """A custom objective for XGBoost, from :func:`xgboost_objective`.

    Callable as XGBoost calls it: ``obj(predt, dtrain)`` in ``xgboost.train(obj=...)``, with
    the labels and weights of the ``DMatrix``; ``obj(y_true, y_pred, sample_weight=None)`` as
    the objective of ``XGBClassifier``, whose wrapper passes ``sample_weight`` by name when
    there are weights.

    Returns:
        ``(grad, hess)``: per-sample derivatives of the loss with respect to the margin, times
        the sample weights, in the margin's dtype (float32, XGBoost's).
    """

    _caller = "xgboost_objective"

    def __call__(
        self, predt_or_y_true: Any, dtrain_or_y_pred: Any, sample_weight: Any = None
    ) -> tuple[_Array, _Array]:
        if _is_instance(dtrain_or_y_pred, "xgboost", "DMatrix"):
            if sample_weight is not None:
                raise TypeError(
                    "xgboost_objective takes sample_weight only as obj(y_true, y_pred, "
                    "sample_weight); with a DMatrix the weights are the DMatrix's"
                )
            dtrain = dtrain_or_y_pred
            weight = dtrain.get_weight()  # empty without weights
            return self._derivatives(
                predt_or_y_true, dtrain.get_label(), weight if weight.size else None
            )
        return self._derivatives(dtrain_or_y_pred, predt_or_y_true, sample_weight)


class LightGBMObjective(_Objective):
    """A custom objective for LightGBM, from :func:`lightgbm_objective`.

    Callable as LightGBM calls it: ``objective(preds, train_data)`` as ``params["objective"]``
    of ``lightgbm.train``, with the labels and weights of the ``Dataset``; ``objective(y_true,
    y_pred, weight)`` as the objective of ``LGBMClassifier`` (whose wrapper passes the weights,
    or None, to an objective of three arguments).

    Returns:
        ``(grad, hess)``: per-sample derivatives of the loss with respect to the margin, times
        the sample weights, float32 (LightGBM's float64 margins are rounded to float32 first:
        it takes float32 derivatives, and would convert any others).
    """

    _caller = "lightgbm_objective"

    def __call__(
        self, preds_or_y_true: Any, train_data_or_y_pred: Any, weight: Any = None
    ) -> tuple[_Array, _Array]:
        if _is_instance(train_data_or_y_pred, "lightgbm", "Dataset"):
            if weight is not None:
                raise TypeError(
                    "lightgbm_objective takes weight only as objective(y_true, y_pred, "
                    "weight); with a Dataset the weights are the Dataset's"
                )
            train_data = train_data_or_y_pred
            margin, label = preds_or_y_true, train_data.get_label()
            weight = train_data.get_weight()
        else:
            margin, label = train_data_or_y_pred, preds_or_y_true
        if isinstance(margin, np.ndarray) and margin.dtype == _F64:
            margin = margin.astype(_F32)
        return self._derivatives(margin, label, weight)


def xgboost_objective(loss: BCEWithLogitsLoss | SigmoidFocalLoss) -> XGBoostObjective:
    """A custom XGBoost objective computing ``loss``'s derivatives with bcers.

    The objective works with the native API (``xgboost.train(params, dtrain, obj=obj)``) and
    the scikit-learn one (``XGBClassifier(objective=obj)``). Each call returns, per sample, the
    gradient and second derivative of the loss with respect to the raw margin, times the
    sample's weight (XGBoost leaves weighting to a custom objective): the weights of the
    ``DMatrix``, or the ``sample_weight`` that ``fit`` passes on.

    With ``xgboost.train`` set ``"objective": "binary:logistic"`` in the parameters: the model
    then starts at margin 0 (XGBoost does not estimate ``base_score`` for a custom objective,
    and 0.5 is margin 0 under the logistic link) and ``predict`` returns probabilities
    (``output_margin=True``: margins). ``XGBClassifier`` does this itself.

    Args:
        loss: a :class:`bcers.BCEWithLogitsLoss` (its ``pos_weight``, one value, and
            ``label_smoothing``) or :class:`bcers.SigmoidFocalLoss` (``alpha``, ``gamma``,
            ``label_smoothing``). Its ``reduction``, ``axis`` and ``keepdims`` play no part:
            the derivatives are those of the sum of the per-sample losses, as the libraries'
            own objectives. Its methods are not called (a subclass's overrides play no part).

    Returns:
        An :class:`XGBoostObjective`. It holds the loss's parameters, read now (attributes
        ``focal``, ``alpha``, ``gamma``, ``pos_weight``, ``label_smoothing``), not the loss,
        and pickles (scikit-learn's ``clone`` deep-copies it).

    Raises:
        TypeError: ``loss`` is of another type.
        ValueError: ``loss`` has a ``weight`` (give per-sample weights to XGBoost instead), or a
            ``pos_weight`` of more than one value.

    When called, shapes are checked (ValueError for multi-class or multi-target predictions,
    which are two-dimensional), and the labels as bcers checks them for the loss (as in
    torch, not at all for these two losses: labels should lie in [0, 1]).
    """
    return XGBoostObjective(loss)


def lightgbm_objective(loss: BCEWithLogitsLoss | SigmoidFocalLoss) -> LightGBMObjective:
    """A custom LightGBM objective computing ``loss``'s derivatives with bcers.

    The objective works with the native API (``lightgbm.train({"objective": obj, ...},
    train_set)``) and the scikit-learn one (``LGBMClassifier(objective=obj)``). Each call
    returns, per sample, the gradient and second derivative of the loss with respect to the raw
    margin, times the sample's weight (LightGBM leaves weighting to a custom objective): the
    weights of the ``Dataset``, or those the scikit-learn wrapper passes on. The derivatives are
    float32, which LightGBM takes as they are.

    LightGBM starts a custom objective at margin 0; its built-in ``binary`` objective matches
    that with ``boost_from_average=False``. ``LGBMClassifier.predict_proba`` returns raw margins
    for a custom objective (with a warning): use ``predict(X, raw_score=True)`` and a sigmoid.

    Args:
        loss: as in :func:`xgboost_objective`.

    Returns:
        A :class:`LightGBMObjective`, as the :class:`XGBoostObjective` of
        :func:`xgboost_objective`.

    Raises:
        TypeError: ``loss`` is of another type.
        ValueError: ``loss`` has a ``weight`` (give per-sample weights to LightGBM instead), or
            a ``pos_weight`` of more than one value.

    When called, shapes and labels are checked as in :func:`xgboost_objective`.
    """
    return LightGBMObjective(loss)
