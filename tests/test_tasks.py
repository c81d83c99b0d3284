import math

import pytest
import torch

from gradtext import tasks


@pytest.mark.parametrize(
    "make", [tasks.argmax_task, tasks.teacher_student, tasks.spirals, tasks.adding_problem]
)
def test_same_seed_same_data_other_seed_other_data(make):
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_argmax_task_is_balanced_and_linearly_separable():
    x, y = tasks.argmax_task(n=4000, dim=16, classes=4, seed=0)
    counts = torch.bincount(y, minlength=4).float() / len(y)
    assert counts.min() > 0.1
    # a linear classifier fitted by least squares on one-hot targets does far better than chance
    w = torch.linalg.lstsq(x.double(), torch.nn.functional.one_hot(y).double()).solution
    accuracy = ((x.double() @ w).argmax(1) == y).double().mean()
    assert accuracy > 0.6


def test_adding_problem_targets_and_chance_level():
    x, y = tasks.adding_problem(n=5000, length=20, seed=1)
    markers = x[..., 1]
    assert torch.all(markers.sum(1) == 2)
    assert torch.all(markers[:, :10].sum(1) == 1) and torch.all(markers[:, 10:].sum(1) == 1)
    assert torch.allclose((x[..., 0] * markers).sum(1, keepdim=True), y)
    chance = float(((y - y.mean()) ** 2).mean())
    assert chance == pytest.approx(1 / 6, abs=0.01)


def test_teacher_student_noise_free_is_a_function_of_inputs():
    x, y = tasks.teacher_student(n=50, dim=4, seed=0)
    x2, y2 = tasks.teacher_student(n=50, dim=4, seed=0, noise=0.5)
    assert torch.equal(x, x2) and not torch.equal(y, y2)


def test_spirals_are_bounded_and_labelled():
    x, y = tasks.spirals(n=300, classes=3, noise=0.0, seed=0)
    assert float(x.norm(dim=1).max()) <= 1 + 1e-6
    assert set(y.tolist()) == {0, 1, 2}


def test_dtype_is_respected():
    x, y = tasks.teacher_student(n=5, dtype=torch.float64)
    assert x.dtype == y.dtype == torch.float64


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: tasks.argmax_task(n=0), ValueError, "n must be >= 1"),
        (lambda: tasks.argmax_task(classes=1), ValueError, "classes must be >= 2"),
        (lambda: tasks.argmax_task(seed=1.5), TypeError, "seed must be an int"),
        (lambda: tasks.adding_problem(length=1), ValueError, "length must be >= 2"),
        (lambda: tasks.teacher_student(noise=-1.0), ValueError, "noise must be >= 0"),
        (lambda: tasks.spirals(classes=1), ValueError, "classes must be an int >= 2"),
        (lambda: tasks.teacher_student(dim=math.pi), TypeError, "dim must be an int"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    "make", [tasks.argmax_task, tasks.teacher_student, tasks.spirals, tasks.adding_problem]
)
def test_a_non_floating_dtype_is_refused(make):
    with pytest.raises(TypeError, match="dtype must be a floating-point torch.dtype"):
        make(n=4, dtype=torch.int64)
    with pytest.raises(TypeError, match="dtype must be a floating-point torch.dtype"):
        make(n=4, dtype="float32")


def test_nan_noise_is_refused():
    with pytest.raises(ValueError, match="noise must be >= 0"):
        tasks.teacher_student(noise=math.nan)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        tasks.spirals(noise=math.nan)


def test_numpy_integers_are_accepted():
    import numpy as np

    x, y = tasks.argmax_task(n=np.int64(10), dim=np.int32(4), classes=np.int64(3),
                             seed=np.int64(2))
    assert x.shape == (10, 4) and torch.equal(x, tasks.argmax_task(n=10, dim=4, classes=3,
                                                                   seed=2)[0])
