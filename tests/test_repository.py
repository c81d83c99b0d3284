"""Checks of the repository itself: notebooks, the table of contents, the README, CI."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").glob("*.ipynb"))


def test_there_are_chapters():
    assert NOTEBOOKS, "book/ holds no notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    dirty = [
        index
        for index, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; strip them before committing"
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapters_check_and_quote_their_claims(path):
    notebook = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    asserts = sum(1 for line in code.splitlines() if line.lstrip().startswith("assert "))
    glued = code.count("glue(")
    assert asserts >= 3 and glued >= 3, f"{path.name}: {asserts} asserts, {glued} glued values"
    headings = [
        line
        for c in notebook["cells"]
        if c["cell_type"] == "markdown"
        for line in "".join(c["source"]).splitlines()
        if line.startswith("# ")
    ]
    assert len(headings) == 1, f"{path.name}: expected exactly one H1, got {headings}"


def test_chapter_numbers_come_from_the_table_of_contents():
    # Sphinx numbers the chapters by their place in the numbered part of _toc.yml; the file's
    # NN_ prefix must agree with it, and a title must not carry a number of its own (the
    # rendered title would read "5. 6. Initialization").
    toc = (ROOT / "_toc.yml").read_text()
    chapters = re.findall(r"file:\s*book/(\d\d)_\S+", toc)
    assert chapters == [f"{n:02d}" for n in range(1, len(chapters) + 1)], chapters
    for path in NOTEBOOKS:
        title = "".join(json.loads(path.read_text())["cells"][0]["source"]).splitlines()[0]
        assert re.match(r"# [^\d]", title), f"{path.name}: title {title!r} starts with a number"


def test_every_chapter_is_in_the_table_of_contents_and_vice_versa():
    toc = (ROOT / "_toc.yml").read_text()
    listed = set(re.findall(r"file:\s*(\S+)", toc))
    for notebook in NOTEBOOKS:
        assert f"book/{notebook.stem}" in listed, f"{notebook.name} is missing from _toc.yml"
    for entry in listed:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry


def test_readme_examples_run():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The package on your own model", 1)[1]
    fit_example, monitor_example, decay_example = re.findall(r"```python\n(.*?)```", section,
                                                              re.S)[:3]
    namespace: dict = {}
    exec(compile(fit_example, "README.md", "exec"), namespace)  # noqa: S102 - the README's own
    assert namespace["history"].diverged
    namespace = {}
    exec(compile(monitor_example, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["verdict"].kind == "vanishing"
    namespace = {}
    exec(compile(decay_example, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["decay"].rate < 0.9


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
