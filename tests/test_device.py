import random

import numpy as np
import pytest
import torch

from gradtext import resolve_device, seed_everything


def test_auto_gives_an_available_device():
    device = resolve_device("auto")
    assert isinstance(device, torch.device)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert device.type == expected


@pytest.mark.parametrize("request_", ["cpu", "CPU", " cpu ", torch.device("cpu")])
def test_cpu_requests(request_):
    assert resolve_device(request_) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu", "", "cuda:-1"])
def test_unknown_device_string_lists_what_is_accepted(bad):
    with pytest.raises(ValueError, match="device must be one of 'auto', 'cpu', 'cuda'"):
        resolve_device(bad)


def test_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="device must be a str or torch.device"):
        resolve_device(0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_cuda_is_reported_not_deferred():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:1")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_is_checked():
    assert resolve_device("cuda:0").type == "cuda"
    with pytest.raises(ValueError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_seed_everything_repeats_python_numpy_and_torch():
    seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    seed_everything(123)
    second = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), ("1", TypeError)])
def test_seed_everything_rejects_bad_seeds(bad, error):
    with pytest.raises(error, match="seed"):
        seed_everything(bad)


def test_seed_everything_accepts_numpy_integers():
    seed_everything(np.int64(5))
    a = torch.rand(2)
    seed_everything(5)
    assert torch.equal(a, torch.rand(2))
