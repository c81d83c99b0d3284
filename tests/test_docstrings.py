"""The examples in the package's docstrings run and print what they say they print."""

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import gradtext

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(gradtext.__path__, prefix="gradtext.")
)


@pytest.mark.parametrize("name", ["gradtext", *MODULES])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_public_functions_have_examples():
    missing = []
    for name in gradtext.__all__:
        item = getattr(gradtext, name)
        if callable(item) and ">>>" not in (item.__doc__ or ""):
            missing.append(name)
    assert not missing, f"public names without a docstring example: {missing}"


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.py")), ids=lambda path: path.name)
def test_benchmark_docstring_examples(path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import each other by name
    module = importlib.import_module(path.stem)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {path}"
