"""Unit tests of ``workbench.data``: corpora, tokenizer, LM splits, synthetic tasks, file loaders, errors.

Everything is generated locally (no network). The tokenizer cache is redirected to a temporary
directory for the whole module so the tests neither read nor write the user's cache.
"""

from __future__ import annotations

import json
import os
import re
import time

import numpy as np
import pytest
import torch

from workbench import data
from workbench.data import corpus, tokenizer as tokmod
from workbench.errors import ConfigError, MissingPathError, NotFoundError


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    old = os.environ.get("WORKBENCH_CACHE")
    os.environ["WORKBENCH_CACHE"] = str(tmp_path_factory.mktemp("wb_cache"))
    yield
    if old is None:
        os.environ.pop("WORKBENCH_CACHE", None)
    else:
        os.environ["WORKBENCH_CACHE"] = old


@pytest.fixture(scope="module")
def tok():
    return data.get_tokenizer(512)


def _equal(a: data.Dataset, b: data.Dataset) -> bool:
    return a.splits.keys() == b.splits.keys() and all(
        a.splits[s].tensors.keys() == b.splits[s].tensors.keys()
        and all(torch.equal(a.splits[s].tensors[k], b.splits[s].tensors[k]) for k in a.splits[s].tensors)
        for s in a.splits)


# ------------------------------------------------------------------------------------------- corpora
@pytest.mark.parametrize("name", ["stories", "recipes"])
def test_corpus_deterministic_and_fast(name):
    t0 = time.perf_counter()
    docs = corpus.generate(name, 2000, seed=0)
    assert time.perf_counter() - t0 < 1.0
    assert len(docs) == 2000 and all(isinstance(d, str) and d for d in docs)
    assert docs == corpus.generate(name, 2000, seed=0)
    assert docs != corpus.generate(name, 2000, seed=1)
    assert corpus.generate(name, 10, seed=0) == docs[:10]  # prefix-stable
    words = {w.strip('.,!?":()').lower() for d in docs for w in d.split()}
    assert len(words) > 150  # a few hundred word types


def test_story_hero_name_recurs():
    for story in corpus.generate("stories", 50, seed=3):
        hero = story.split()[0] if not story.startswith(("Once", "There")) else re.search(r"(?:named|called) (\w+)", story).group(1)
        assert story.count(hero) >= 3, story


def test_corpora_differ(tok):
    st, rc = corpus.generate("stories", 300, 0), corpus.generate("recipes", 300, 0)
    assert any("Preheat" in d or "Ingredients:" in d for d in rc) and not any("Ingredients:" in d for d in st)

    def hist(docs):
        ids = torch.tensor([i for d in docs for i in tok(d, add_special_tokens=False)["input_ids"]])
        h = torch.bincount(ids, minlength=len(tok)).double()
        return h / h.sum()

    tv = 0.5 * (hist(st) - hist(rc)).abs().sum().item()  # total variation between unigram distributions
    assert tv > 0.3


def test_unknown_corpus_and_bad_n_docs():
    with pytest.raises(NotFoundError, match="stories"):
        corpus.generate("poems", 3)
    with pytest.raises(ConfigError):
        corpus.generate("stories", 0)


# ----------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_specials_and_any_string(tok):
    from transformers import PreTrainedTokenizerFast

    assert isinstance(tok, PreTrainedTokenizerFast)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert len(tok) == 512
    s = "The capital of Zorbia is Q'uellen — 42°C, naïve 漢字 🙂\n\ttabs"
    ids = tok(s, add_special_tokens=False)["input_ids"]
    assert max(ids) < 512 and tok.decode(ids) == s


def test_tokenizer_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    path = tokmod.cache_path(300)
    assert path.parent == tmp_path / "tokenizers" and not path.exists()
    a = data.get_tokenizer(300)
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    mtime = path.stat().st_mtime_ns
    tokmod._MEMO.clear()  # force a read from disk, as a new process would
    b = data.get_tokenizer(300)
    assert path.stat().st_mtime_ns == mtime  # read, not retrained
    assert a.get_vocab() == b.get_vocab() and len(a) == 300
    assert json.loads(path.read_text())["model"]["type"] == "BPE"
    # the same settings train the same vocabulary (deterministic)
    assert tokmod._train(300) == path.read_text()
    # a corrupt cache file is retrained, not trusted
    path.write_text("{truncated")
    tokmod._MEMO.clear()
    assert data.get_tokenizer(300).get_vocab() == a.get_vocab()
    # each call gives a fresh object: adding tokens to one leaves the other alone
    b.add_tokens(["<|new|>"])
    assert len(data.get_tokenizer(300)) == 300


def test_tokenizer_bad_vocab_size():
    with pytest.raises(ConfigError, match="vocab_size"):
        data.get_tokenizer(100)


# ------------------------------------------------------------------------------------------ LM splits
def test_lm_split_blocks(tok):
    texts = ["Lily had a dog.", "Preheat the oven.", "Tom ran."]
    split = data.lm_split(texts, tok, block_size=8, name="val")
    ids, mask, labels = split.tensors["input_ids"], split.tensors["attention_mask"], split.tensors["labels"]
    stream = [i for t in texts for i in tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]]
    assert ids.shape == mask.shape == labels.shape == (-(-len(stream) // 8), 8)
    assert ids.dtype == torch.long and ids.reshape(-1)[: len(stream)].tolist() == stream
    assert int(mask.sum()) == len(stream)
    assert torch.equal(labels[mask == 1], ids[mask == 1]) and bool((labels[mask == 0] == -100).all())
    assert bool((ids[mask == 0] == tok.pad_token_id).all()) and not split.shuffle
    with pytest.raises(ConfigError, match="block_size"):
        data.lm_split(texts, tok, block_size=1)
    with pytest.raises(ConfigError):
        data.lm_split(["", "  "], tok, block_size=8)


def test_text_datasets_deterministic_and_described():
    a = data.load("stories", n_docs=60, n_val_docs=10, seed=1, block_size=32)
    b = data.load("stories", n_docs=60, n_val_docs=10, seed=1, block_size=32)
    c = data.load("stories", n_docs=60, n_val_docs=10, seed=2, block_size=32)
    assert _equal(a, b) and not _equal(a, c)
    assert a.task == "lm" and a.tokenizer is not None and set(a.splits) == {"train", "val"}
    assert a.train.tensors["input_ids"].shape[1] == 32
    d = a.describe()
    json.dumps(d)
    assert d["options"]["seed"] == 1 and d["options"]["n_docs"] == 60 and d["n_docs"] == {"train": 60, "val": 10}
    r = data.load("recipes", n_docs=60, n_val_docs=10)
    assert r.tokenizer.get_vocab() == a.tokenizer.get_vocab()  # shared vocabulary across corpora


def test_lm_loss_runs_on_a_tiny_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    ds = data.load("recipes", n_docs=20, n_val_docs=0, block_size=16)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(ds.tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=16,
                                       bos_token_id=1, eos_token_id=2, pad_token_id=0))
    loss, _ = ds.loss(model, ds.train.batch_at(0, 4, seed=0))
    assert torch.isfinite(loss) and 5.0 < float(loss.detach()) < 7.5  # ≈ ln(512) at init


# ------------------------------------------------------------------------------------------ batch_at
def test_batch_at_is_pure():
    ds = data.load("sparse_parity", n_train=50, n_val=10)
    first = ds.train.batch_at(7, 16, seed=3)
    for i in range(20):  # other calls in between change nothing
        ds.train.batch_at(i, 16, seed=i)
    again = ds.train.batch_at(7, 16, seed=3)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(ds.train.batch_at(7, 16, seed=4)["x"], first["x"])
    # one epoch covers every example exactly once; batches wrap across epochs
    idx = np.concatenate([ds.train.indices_at(i, 10, seed=0) for i in range(5)])
    assert sorted(idx.tolist()) == list(range(50))
    assert len(ds.train.batch_at(10**6, 16, seed=0)["x"]) == 16


def test_batch_size_must_be_positive():
    ds = data.load("teacher_student", n_train=10, n_val=5)
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="batch_size"):
            ds.train.batch_at(0, bad)


# -------------------------------------------------------------------------------------- synthetic
@pytest.mark.parametrize("name", ["modular_arithmetic", "teacher_student", "sparse_parity"])
def test_synthetic_deterministic(name):
    assert _equal(data.load(name, seed=5), data.load(name, seed=5))
    assert not _equal(data.load(name, seed=5), data.load(name, seed=6))
    json.dumps(data.load(name).describe())


@pytest.mark.parametrize("op,fn", [("+", lambda a, b, p: (a + b) % p), ("-", lambda a, b, p: (a - b) % p),
                                   ("*", lambda a, b, p: (a * b) % p), ("/", lambda a, b, p: (a * pow(b, -1, p)) % p)])
def test_modular_arithmetic(op, fn):
    ds = data.load("modular_arithmetic", p=11, op=op, train_fraction=0.4, seed=0)
    x = torch.cat([ds.train.tensors["x"], ds.split("val").tensors["x"]])
    y = torch.cat([ds.train.tensors["y"], ds.split("val").tensors["y"]])
    assert x.dtype == y.dtype == torch.long and x.shape[1] == 2 and ds.task == "classification"
    pairs = {tuple(r) for r in x.tolist()}
    assert len(pairs) == len(x) == (110 if op == "/" else 121)  # train and val are disjoint, all pairs present
    assert all(fn(a, b, 11) == t for (a, b), t in zip(x.tolist(), y.tolist()))
    with pytest.raises(ConfigError, match="prime"):
        data.load("modular_arithmetic", p=12, op="/")
    with pytest.raises(ConfigError, match="op"):
        data.load("modular_arithmetic", op="^")


def test_teacher_student_matches_teacher():
    ds = data.load("teacher_student", d_in=5, d_out=3, n_train=40, n_val=20, teacher_width=7, noise=0.5)
    x, y = ds.split("val").tensors["x"], ds.split("val").tensors["y"]
    assert x.shape == (20, 5) and y.shape == (20, 3) and x.dtype == y.dtype == torch.float32
    pred = torch.relu(x @ ds.teacher["w1"].T) @ ds.teacher["w2"].T
    assert torch.allclose(pred, y, atol=1e-5)  # val targets are noiseless
    xt, yt = ds.train.tensors["x"], ds.train.tensors["y"]
    assert not torch.allclose(torch.relu(xt @ ds.teacher["w1"].T) @ ds.teacher["w2"].T, yt, atol=1e-2)


def test_sparse_parity_labels():
    ds = data.load("sparse_parity", n_bits=12, k=3, n_train=200, n_val=50, seed=1)
    x, y = ds.train.tensors["x"], ds.train.tensors["y"]
    assert x.shape == (200, 12) and set(x.unique().tolist()) == {-1.0, 1.0} and y.dtype == torch.long
    secret = ds.info["secret"]
    assert len(secret) == 3 and torch.equal(y, (x[:, secret].prod(1) < 0).long())
    assert 0.3 < y.float().mean() < 0.7
    with pytest.raises(ConfigError, match="k"):
        data.load("sparse_parity", n_bits=3, k=4)


# ------------------------------------------------------------------------------------------- files
DOCS = ["Alice met a robot.\nIt said hello.", "The robot liked tea.", "They walked to the sea.", "It rained.",
        "The end of the tale."]


def test_from_text_file(tmp_path, tok):
    p = tmp_path / "notes.txt"
    p.write_text("\n\n".join(DOCS) + "\n\n  \n", encoding="utf-8")
    ds = data.load(str(p), val_fraction=0.2, block_size=16, tokenizer=tok)
    assert ds.info["n_docs"] == {"train": 4, "val": 1} and ds.info["format"] == "txt"
    assert _equal(ds, data.from_text_file(p, tokenizer=tok, block_size=16, val_fraction=0.2))
    text = ds.tokenizer.decode(torch.cat([s.tensors["input_ids"][s.tensors["attention_mask"] == 1] for s in ds.splits.values()]))
    assert all(d in text for d in DOCS)  # every document, intact (the first one spans two lines)
    assert "val" not in data.from_text_file(p, tokenizer=tok, val_fraction=0.0).splits
    json.dumps(ds.describe())


def test_from_jsonl(tmp_path, tok):
    p = tmp_path / "rows.jsonl"
    rows = [{"body": d, "id": i} for i, d in enumerate(DOCS)] + [{"id": 99}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    ds = data.load(p, field="body", tokenizer=tok, block_size=16)
    assert ds.info["n_skipped"] == 1 and sum(ds.info["n_docs"].values()) == 5
    with pytest.raises(ConfigError, match=r"'text'.*\['body', 'id'\]"):
        data.from_jsonl(p, tokenizer=tok)  # field="text" is missing: the message names the fields present
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(ConfigError, match="line 2"):
        data.from_jsonl(bad, tokenizer=tok)


def test_from_disk(tmp_path, tok):
    import datasets

    d = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": DOCS[:4]}),
                          "validation": datasets.Dataset.from_dict({"text": DOCS[4:]})}).save_to_disk(str(d))
    ds = data.load(str(d), tokenizer=tok, block_size=16)
    assert ds.info["n_docs"] == {"train": 4, "val": 1} and ds.info["val_split"] == "validation"
    single = tmp_path / "single"
    datasets.Dataset.from_dict({"content": DOCS}).save_to_disk(str(single))
    ds = data.from_disk(single, field="content", tokenizer=tok, val_fraction=0.4)
    assert ds.info["n_docs"] == {"train": 3, "val": 2}
    with pytest.raises(ConfigError, match=r"'text'.*\['content'\]"):
        data.load(single, tokenizer=tok)
    with pytest.raises(ConfigError, match="save_to_disk"):
        data.from_disk(tmp_path, tokenizer=tok)  # a directory, but not a saved dataset


# ------------------------------------------------------------------------------------------- errors
def test_missing_paths(tmp_path):
    missing = tmp_path / "nope.txt"
    for call in (lambda: data.load(str(missing)), lambda: data.load(missing), lambda: data.from_text_file(missing),
                 lambda: data.from_jsonl(tmp_path / "nope.jsonl"), lambda: data.from_disk(tmp_path / "nodir")):
        with pytest.raises(MissingPathError, match="does not exist|neither") as e:
            call()
        assert isinstance(e.value, FileNotFoundError) and "save_to_disk" in str(e.value)


def test_empty_files(tmp_path):
    txt, jl = tmp_path / "empty.txt", tmp_path / "empty.jsonl"
    txt.write_text("\n \n\n")
    jl.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        data.load(str(txt))
    with pytest.raises(ConfigError, match="empty"):
        data.load(str(jl))


def test_unknown_name_and_options():
    with pytest.raises(NotFoundError) as e:
        data.load("storie")
    msg = str(e.value)
    assert "'stories'" in msg and all(n in msg for n in data.DATASETS.names()) and "exists" in msg
    with pytest.raises(ConfigError, match=r"\['n_doc'\].*n_docs"):
        data.load("stories", n_doc=10)
    with pytest.raises(ConfigError, match="val_fraction"):
        data.load("sparse_parity", val_fraction=0.1)


def test_registry_and_reexports():
    assert data.DATASETS.names() == ["stories", "recipes", "python_docs", "python_code", "modular_arithmetic", "teacher_student", "sparse_parity",
                                     "two_afc", "delayed_match"]
    assert {r["task"] for r in data.DATASETS.table()} == {"lm", "classification", "regression"}
    from workbench.data.base import Dataset, Split, to_device

    assert data.Split is Split and data.Dataset is Dataset and data.to_device is to_device


def test_seeds_that_differ_by_2_to_the_32_give_different_data():
    from workbench.data.base import Split, _epoch_order, seed_words

    split = Split({"x": torch.arange(1000)})
    a = split.indices_at(0, 64, seed=5)
    assert not np.array_equal(a, split.indices_at(0, 64, seed=5 + 2**32))
    assert not np.array_equal(a, split.indices_at(0, 64, seed=5 - 2**32))
    assert not np.array_equal(split.indices_at(0, 64, seed=-1), split.indices_at(0, 64, seed=2**32 - 1))
    # seeds in [0, 2**32) keep the data they always had (the seed list numpy saw before the fix)
    for seed in (0, 7, 2**31 + 3, 2**32 - 1):
        want = np.random.default_rng([seed & 0xFFFFFFFF, 2]).permutation(1000)
        assert np.array_equal(_epoch_order(1000, seed, 2), want)
    assert len({tuple(seed_words(s)) for s in (1, 1 + 2**32, 1 - 2**32, -1, 2**64 + 1)}) == 5
