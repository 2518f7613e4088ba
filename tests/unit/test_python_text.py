"""The real-text corpora read from the running interpreter: deterministic, split by source, read-only."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest
import torch

from workbench import data
from workbench.data import python_text
from workbench.errors import ConfigError


def _stdlib_state():
    root = Path(sysconfig.get_paths()["stdlib"])
    return {str(p): p.stat().st_mtime_ns for p in python_text.stdlib_files(root)}, sorted(os.listdir(root))


@pytest.fixture(scope="module")
def code_pair():
    before = _stdlib_state()
    a = data.load("python_code", n_files=12)
    b = data.load("python_code", n_files=12)
    return before, a, b


def test_two_loads_are_identical_and_change_nothing_on_disk(code_pair):
    before, a, b = code_pair
    for split in ("train", "val"):
        assert torch.equal(a.splits[split].tensors["input_ids"], b.splits[split].tensors["input_ids"])
    assert a.info["text_sha256"] == b.info["text_sha256"]
    assert _stdlib_state() == before


def test_sources_never_straddle_train_and_val(code_pair):
    _, a, _ = code_pair
    assert a.info["n_sources"] == {"train": 11, "val": 1}
    train, val, facts = python_text.code_documents(n_files=12)
    assert set(facts["val_sources"]) == set(a.info["val_sources"])
    text = {n: python_text.read_source(Path(sysconfig.get_paths()["stdlib"]) / n) for n in facts["val_sources"]}
    # every val document is a piece of a val file, and no train document is
    assert all(any(doc in t for t in text.values()) for doc in val)
    assert not any(doc in t for doc in train for t in text.values() if len(doc) > 200)


def test_no_tests_or_site_packages_are_read():
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = {part for p in python_text.stdlib_files(root) for part in p.relative_to(root).parts[:-1]}
    assert not parts & python_text.EXCLUDED_DIRS
    assert len(python_text.stdlib_files(root)) > 100


def test_docs_record_the_interpreter_and_share_the_python_tokenizer(code_pair):
    _, code, _ = code_pair
    docs = data.load("python_docs")
    assert docs.info["python"] and docs.info["implementation"]
    assert docs.describe()["python"] == docs.info["python"]
    assert docs.tokenizer.name_or_path == code.tokenizer.name_or_path
    assert "python" in docs.tokenizer.name_or_path
    # a different seed moves whole topics between the splits; the same seed repeats
    assert data.load("python_docs", seed=1).info["val_sources"] != docs.info["val_sources"]
    assert data.load("python_docs", seed=0).info["val_sources"] == docs.info["val_sources"]
    rebuilt = data.from_description(docs.describe())
    assert torch.equal(rebuilt.train.tensors["input_ids"], docs.train.tensors["input_ids"])


def test_chunks_are_whole_parts_within_the_limit():
    text = "\n\n".join(f"paragraph {i} " + "x" * (i * 7) for i in range(40))
    chunks = python_text.chunk_text(text, 300, "\n\n")
    assert "\n\n".join(chunks) == text
    assert all(len(c) <= 300 or "\n\n" not in c for c in chunks)


@pytest.mark.parametrize("options", [{"n_files": 1}, {"chunk_chars": 10}, {"val_fraction": 1.0}, {"n_files": "3"}])
def test_bad_options_are_refused(options):
    with pytest.raises(ConfigError):
        data.load("python_code", **options)
