"""The seed documents' examples, run with bcers, give torch's numbers.

``bcers/_seed_examples.json`` (shipped in the package, written by
``tests/fixtures/generate_torch_fixtures.py`` with real torch) holds each example as bcers
runs it: its input and target (the documents' literal values, or float32 draws from
``numpy.random.default_rng(seed)`` where a document draws random tensors), and torch's loss
and input gradient from ``.backward()``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from typing import Any

import numpy as np
import pytest

import bcers

LOSS_RTOL = 1e-6
GRAD_RTOL = 2e-6


def load() -> dict[str, Any]:
    text = resources.files("bcers").joinpath("_seed_examples.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


DATA = load()
EXAMPLES: list[dict[str, Any]] = DATA["examples"]
BY_NAME = {e["name"]: e for e in EXAMPLES}


def f32(value: Any) -> np.ndarray:
    return np.array(value, dtype=np.float32)


def loss_and_grads(example: dict[str, Any], x: np.ndarray, y: np.ndarray) -> list[Any]:
    """``(how, loss, grad)`` through each entry point that fits the example's kind."""
    kwargs = {k: f32(v) for k, v in example["kwargs"].items()}
    kind = example["kind"]
    if kind == "binary_cross_entropy":
        return [
            (
                "function",
                bcers.binary_cross_entropy(x, y, **kwargs),
                bcers.binary_cross_entropy_backward(None, x, y, **kwargs),
            ),
            ("value_and_grad", *bcers.binary_cross_entropy_value_and_grad(x, y, **kwargs)),
        ]
    cls = {"BCELoss": bcers.BCELoss, "BCEWithLogitsLoss": bcers.BCEWithLogitsLoss}[kind]
    loss_fn = cls(**kwargs)
    return [
        ("module", loss_fn(x, y), loss_fn.backward(x, y)),
        ("value_and_grad", *loss_fn.value_and_grad(x, y)),
    ]


def check_loss(loss: Any, expected: float, what: str) -> None:
    assert isinstance(loss, np.float32), f"{what}: {type(loss).__name__}"
    assert abs(float(loss) - expected) <= LOSS_RTOL * abs(expected), (
        f"{what}: {float(loss)!r}, torch {expected!r}"
    )


def test_examples_are_present() -> None:
    assert DATA["torch_version"].startswith("2.")
    kinds = {e["kind"] for e in EXAMPLES}
    assert kinds == {"BCELoss", "binary_cross_entropy", "BCEWithLogitsLoss"}
    assert len(EXAMPLES) == 6
    for e in EXAMPLES:
        assert e["dtype"] == "float32"
        assert e["torch_version"] == DATA["torch_version"]
        assert {"name", "title", "source", "input", "target", "torch_loss", "torch_grad"} <= set(e)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["name"] for e in EXAMPLES])
def test_example_gives_torchs_loss_and_gradient(example: dict[str, Any]) -> None:
    x, y = f32(example["input"]), f32(example["target"])
    expected_grad = np.array(example["torch_grad"], dtype=np.float64)
    for how, loss, grad in loss_and_grads(example, x, y):
        check_loss(loss, example["torch_loss"], how)
        assert isinstance(grad, np.ndarray)
        assert grad.dtype == np.float32
        assert grad.shape == x.shape
        np.testing.assert_allclose(grad, expected_grad, rtol=GRAD_RTOL, atol=0, err_msg=how)


def test_seed000_example1_prints_0_8746() -> None:
    example = BY_NAME["seed000_example1_bceloss_1d"]
    x = f32([0.4498, 0.9845, 0.4576, 0.3494, 0.2434])  # the document's literals
    y = f32([0.2345, 0.5565, 0.3468, 0.1444, 0.3546])
    np.testing.assert_array_equal(x, f32(example["input"]))
    np.testing.assert_array_equal(y, f32(example["target"]))
    loss = bcers.BCELoss()(x, y)
    assert f"{loss:.4f}" == "0.8746"
    assert example["torch_printed"] == "tensor(0.8746)"


def test_seed000_example2_keeps_the_literals() -> None:
    example = BY_NAME["seed000_example2_bceloss_2d"]
    x = f32([[0.4576, 0.6496, 0.6783], [0.4895, 0.9454, 0.5443], [0.9491, 0.3825, 0.7235]])
    y = f32([[0.2432, 0.1579, 0.0325], [0.3464, 0.2442, 0.3847], [0.4528, 0.0876, 0.0499]])
    np.testing.assert_array_equal(x, f32(example["input"]))
    np.testing.assert_array_equal(y, f32(example["target"]))
    assert f"{bcers.BCELoss()(x, y):.4f}" == "1.0828"


SIGMOID = [e for e in EXAMPLES if "logits" in e]


@pytest.mark.parametrize("example", SIGMOID, ids=[e["name"] for e in SIGMOID])
def test_sigmoid_examples_with_numpys_sigmoid(example: dict[str, Any]) -> None:
    """A bcers user computes the probabilities with NumPy, not torch.sigmoid."""
    z, y = f32(example["logits"]), f32(example["target"])
    p = 1 / (1 + np.exp(-z))
    assert p.dtype == np.float32
    # NumPy's float32 sigmoid is within a few ulps of torch's.
    np.testing.assert_allclose(p, f32(example["input"]), rtol=4 * np.finfo(np.float32).eps)
    for how, loss, _ in loss_and_grads(example, p, y):
        check_loss(loss, example["torch_loss"], f"{how} on NumPy's sigmoid")
    # The gradient with respect to the logits (what the document's .backward() fills in):
    # bcers's gradient times sigmoid's derivative p (1 - p).
    x = f32(example["input"])
    grad = loss_and_grads(example, x, y)[0][2]
    np.testing.assert_allclose(
        grad * x * (1 - x), example["torch_grad_logits"], rtol=GRAD_RTOL, atol=0
    )


RANDOM = [e for e in EXAMPLES if "rng" in e]


@pytest.mark.parametrize("example", RANDOM, ids=[e["name"] for e in RANDOM])
def test_random_examples_are_reproducible_with_numpy(example: dict[str, Any]) -> None:
    """The stored random tensors are the recorded default_rng draws (float32)."""
    rng = np.random.default_rng(example["rng"]["seed"])
    if "logits" in example:
        shape = np.shape(example["logits"])
        np.testing.assert_array_equal(
            rng.standard_normal(shape).astype(np.float32), f32(example["logits"])
        )
        np.testing.assert_array_equal(rng.random(shape).astype(np.float32), f32(example["target"]))
    else:
        shape = np.shape(example["input"])
        np.testing.assert_array_equal(
            rng.standard_normal(shape).astype(np.float32), f32(example["input"])
        )
        np.testing.assert_array_equal(
            rng.integers(0, 2, shape).astype(np.float32), f32(example["target"])
        )


def test_pos_weight_example() -> None:
    example = BY_NAME["seed001_example4_pos_weight"]
    assert np.shape(example["input"]) == (10, 64)
    assert example["kwargs"]["pos_weight"] == [1.0] * 64
    # log(1 + exp(-1.5)), the loss of every element
    assert example["torch_loss"] == pytest.approx(np.log1p(np.exp(-1.5)), rel=1e-6)


def test_module_prints_the_examples_and_exits_0() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bcers"], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "bcers 0.8746   torch 0.8746" in proc.stdout
    assert proc.stdout.rstrip().endswith("All seed examples match torch.")


def test_module_stops_quietly_when_its_reader_goes_away() -> None:
    # `python -m bcers | head -1`: no traceback once the pipe is closed.
    with subprocess.Popen(
        [sys.executable, "-m", "bcers"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=300)
    assert first.startswith("bcers ")
    assert "Traceback" not in err, err
