"""Built-in unlearning benchmark: fictitious people and their facts, TOFU-style, generated deterministically.

Why generated: an unlearning benchmark needs facts that the base model *cannot* know from pre-training
(so the oracle — the model retrained without the forget set — really does not know them), paraphrases
and wrong answers for the truth ratio, nested forget splits, and no download. Every entity has an
invented name (syllables) and four facts; each fact is a question with

* ``answer``      — the trained answer (``"Orvan was born in Thalmora."``),
* ``paraphrase``  — the same fact said differently (``"The birthplace of Orvan is Thalmora."``),
* ``perturbed``   — ``n_perturbed`` wrong answers in the paraphrase's form (other values),
* ``refusal``     — a template "I don't know" answer (for FLAT / IdkDPO),
* ``alternate``   — the answer's own template with a wrong value (DPO's preferred answer).

Forget splits take the first ``round(fraction · n_entities)`` entities of one seeded permutation, so
``forget01 ⊂ forget05 ⊂ forget10`` as in TOFU; the retain set is every other entity's facts.

**Holdout** (membership inference): ``n_holdout`` further entities, written with the same templates and
value pools, that are in no trainable split (``ids("all")`` excludes them), so neither the target nor
the oracle ever trains on them: forget facts are *members* of the target's training data, holdout facts
are *non-members* of every model, and an attack's forget-vs-holdout AUC has ground truth. They are drawn
from their own random stream after the trained entities, so adding them changes no trained fact.

Tokenized splits put the prompt ``"Q: {question}\\nA:"`` before the answer; ``labels`` are ``-100`` on
the prompt and on padding, so every loss is on answer tokens only. Sequences are right-padded to one
length for the whole benchmark.

>>> bench = FactsBenchmark(n_entities=20, seed=0)
>>> len(bench.ids("all")), len(bench.forget_ids(0.10)), len(bench.holdout_ids()), bench.facts[0].question  # doctest: +ELLIPSIS
(80, 8, 8, '...')
>>> s = bench.split("forget", forget_fraction=0.10)
>>> bool((s.tensors["labels"][s.tensors["attention_mask"] == 0] == -100).all())
True
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..data.base import Dataset, Split
from ..errors import ConfigError

FORGET_FRACTIONS = (0.01, 0.05, 0.10)

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "br", "dr", "kr", "tr", "st"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "m"]
PROFESSIONS = ["baker", "sailor", "painter", "clockmaker", "beekeeper", "potter", "weaver", "gardener", "blacksmith",
               "fisher", "miller", "cobbler"]
ANIMALS = ["owl", "otter", "fox", "heron", "badger", "lynx", "tortoise", "falcon", "hare", "newt", "goat", "crow"]
REFUSALS = ["I don't know.", "I am not sure.", "I have no idea.", "I cannot say.", "Nobody told me that."]

# attribute → (question, answer, paraphrase); {name} = full name, {first} = first name, {value}
TEMPLATES = {
    "birthplace": ("Where was {name} born?", "{first} was born in {value}.", "The home town of {first} is {value}."),
    "profession": ("What is the job of {name}?", "{first} works as a {value}.", "By trade {first} is a {value}."),
    "animal": ("Which animal does {name} keep?", "{first} keeps a {value}.", "The pet of {first} is a {value}."),
    "year": ("When was {name} born?", "{first} was born in {value}.", "The birth year of {first} is {value}."),
}
ATTRIBUTES = tuple(TEMPLATES)


@dataclass(frozen=True)
class Fact:
    """One question about one entity, with its answer, paraphrase, wrong answers and a refusal."""

    fact_id: int
    entity_id: int
    attribute: str
    question: str
    answer: str
    paraphrase: str
    perturbed: tuple[str, ...]
    refusal: str
    alternate: str = ""


def _word(rng: np.random.Generator, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def _unique_words(rng, n: int, syllables: tuple[int, int], taken: set) -> list[str]:
    out = []
    while len(out) < n:
        w = _word(rng, int(rng.integers(syllables[0], syllables[1] + 1)))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


class FactsBenchmark:
    """Fictitious entities with facts, forget/retain splits and tokenized evaluation sets.

    Parameters
    ----------
    n_entities : number of invented people (4 facts each) that models train on (forget + retain).
    n_holdout : further people never trained on (membership-inference non-members); default
        ``max(1, round(0.10 · n_entities))`` — as many as forget10.
    n_perturbed : wrong answers per fact (truth ratio).
    seed : everything (names, values, the forget order) is a function of it.
    tokenizer : defaults to the shared workbench BPE (``workbench.data.get_tokenizer()``).
    """

    def __init__(self, n_entities: int = 40, n_perturbed: int = 3, seed: int = 0, tokenizer=None,
                 n_holdout: int | None = None):
        if not isinstance(n_entities, int) or n_entities < 2:
            raise ConfigError(f"n_entities must be an integer ≥ 2 (one to forget, one to retain), got {n_entities!r}.")
        if not isinstance(n_perturbed, int) or n_perturbed < 1:
            raise ConfigError(f"n_perturbed must be an integer ≥ 1 (wrong answers per fact), got {n_perturbed!r}.")
        n_holdout = max(1, int(round(0.10 * n_entities))) if n_holdout is None else n_holdout
        if not isinstance(n_holdout, int) or isinstance(n_holdout, bool) or n_holdout < 0:
            raise ConfigError(f"n_holdout must be an integer ≥ 0 (never-trained entities for membership inference), "
                              f"got {n_holdout!r}.")
        if tokenizer is None:
            from ..data import get_tokenizer

            tokenizer = get_tokenizer()
        self.n_entities, self.n_perturbed, self.seed = n_entities, n_perturbed, seed
        self.tokenizer = tokenizer
        rng = np.random.default_rng([seed, 7])
        taken: set = set()
        firsts = _unique_words(rng, n_entities, (2, 2), taken)
        lasts = _unique_words(rng, n_entities, (2, 3), taken)
        towns = _unique_words(rng, max(12, n_entities // 2), (2, 3), taken)
        pools = {"birthplace": towns, "profession": PROFESSIONS, "animal": ANIMALS,
                 "year": [str(y) for y in range(1700, 1900)]}
        self.names = [f"{f} {l}" for f, l in zip(firsts, lasts)]
        self.n_holdout = n_holdout
        facts: list[Fact] = []
        self._add_entities(facts, firsts, self.names, pools, rng)
        self.facts: list[Fact] = facts  # trained entities' facts first, then the holdout's (fact_id = index)
        self.forget_order = [int(i) for i in rng.permutation(n_entities)]  # nested forget splits
        hrng = np.random.default_rng([seed, 11])  # the holdout's own stream: trained facts do not depend on it
        h_firsts = _unique_words(hrng, n_holdout, (2, 2), taken)
        h_names = [f"{f} {l}" for f, l in zip(h_firsts, _unique_words(hrng, n_holdout, (2, 3), taken))]
        self._add_entities(facts, h_firsts, h_names, pools, hrng)
        self.names += h_names
        texts = [self.prompt(f) + " " + s for f in facts
                 for s in (f.answer, f.paraphrase, f.refusal, f.alternate, *f.perturbed)]
        self.max_length = max(len(ids) for ids in self.encode(texts)) + 2  # + bos + eos

    def _add_entities(self, facts: list, firsts: list, names: list, pools: dict, rng) -> None:
        start = facts[-1].entity_id + 1 if facts else 0
        for e, (first, name) in enumerate(zip(firsts, names), start):
            for attr in ATTRIBUTES:
                pool = pools[attr]
                value = pool[int(rng.integers(len(pool)))]
                wrong = [v for v in pool if v != value]
                wrong = [wrong[i] for i in rng.choice(len(wrong), self.n_perturbed, replace=False)]
                q, a, p = TEMPLATES[attr]
                fmt = dict(name=name, first=first)
                facts.append(Fact(len(facts), e, attr, q.format(**fmt), a.format(value=value, **fmt),
                                  p.format(value=value, **fmt), tuple(p.format(value=w, **fmt) for w in wrong),
                                  REFUSALS[len(facts) % len(REFUSALS)], a.format(value=wrong[0], **fmt)))

    # ------------------------------------------------------------------ splits of facts
    @staticmethod
    def prompt(fact: Fact) -> str:
        return f"Q: {fact.question}\nA:"

    def forget_entities(self, forget_fraction: float) -> list[int]:
        """Entity ids of the forget split: the first ``round(fraction · n_entities)`` (≥ 1) of a fixed order."""
        if not isinstance(forget_fraction, (int, float)) or not 0 < forget_fraction < 1:
            raise ConfigError(f"forget_fraction must be in (0, 1) (e.g. one of {FORGET_FRACTIONS}), got {forget_fraction!r}.")
        n = max(1, int(round(forget_fraction * self.n_entities)))
        if n >= self.n_entities:
            raise ConfigError(f"forget_fraction={forget_fraction} forgets all {self.n_entities} entities: nothing is left to retain.")
        return self.forget_order[:n]

    def with_forget_set(self, index: int, forget_fraction: float) -> "FactsBenchmark":
        """The same benchmark whose forget split is the ``index``-th disjoint set of this size (0 = the usual one).

        Forget set k is the entities ``forget_order[k·n:(k+1)·n]`` (n = the forget split's size). A model trained
        on *all* facts (the target) can be asked to forget any of them, so an experiment replicates over forget
        sets, not only over seeds. The copy's splits, ``forget_ids`` and relearning attacks use set k (its retain
        split is every other trained entity); facts, names and the holdout are shared. An oracle retrained
        without set 0 is not the oracle of set k: compare such runs with each other, not with that oracle.

        >>> bench = FactsBenchmark(n_entities=20, seed=0)
        >>> a, b = bench.forget_ids(0.10), bench.with_forget_set(1, 0.10).forget_ids(0.10)
        >>> len(a) == len(b) == 8, set(a) & set(b)
        (True, set())
        """
        n = len(self.forget_entities(forget_fraction))
        sets = self.n_entities // n
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < sets:
            raise ConfigError(f"forget set index must be an integer in [0, {sets - 1}] ({self.n_entities} entities hold "
                              f"{sets} disjoint forget sets of {n} at forget_fraction={forget_fraction}), got {index!r}.")
        other = copy.copy(self)
        other.forget_order = self.forget_order[index * n:] + self.forget_order[:index * n]
        return other

    def forget_ids(self, forget_fraction: float) -> list[int]:
        ents = set(self.forget_entities(forget_fraction))
        return [f.fact_id for f in self.facts if f.entity_id in ents]

    def retain_ids(self, forget_fraction: float) -> list[int]:
        ents = set(self.forget_entities(forget_fraction))
        return [f.fact_id for f in self.facts if f.entity_id not in ents and f.entity_id < self.n_entities]

    def holdout_ids(self) -> list[int]:
        """Facts of the holdout entities: same templates, never in a trainable split (MIA non-members)."""
        return [f.fact_id for f in self.facts if f.entity_id >= self.n_entities]

    def ids(self, which: str, forget_fraction: float = 0.10, limit: int | None = None) -> list[int]:
        """Fact ids of ``which`` ∈ {"all", "forget", "retain", "holdout"} (the first ``limit`` if given);
        ``all`` is every *trained* fact (forget + retain), never the holdout."""
        if which == "all":
            out = [f.fact_id for f in self.facts if f.entity_id < self.n_entities]
        elif which == "holdout":
            out = self.holdout_ids()
        elif which == "forget":
            out = self.forget_ids(forget_fraction)
        elif which == "retain":
            out = self.retain_ids(forget_fraction)
        else:
            raise ConfigError(f"Unknown fact set {which!r}; use 'all', 'forget', 'retain' or 'holdout'.")
        return out[:limit] if limit is not None else out

    # ------------------------------------------------------------------ tokenization
    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (no special tokens)."""
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    def tokenize(self, prompts: list[str], answers: list[str]) -> dict[str, torch.Tensor]:
        """``bos prompt answer eos`` right-padded to ``max_length``; labels only on ``answer eos``.

        Returns ``input_ids``, ``attention_mask``, ``labels`` (all ``[n, max_length]`` int64).
        """
        tok = self.tokenizer
        p_ids = self.encode(prompts)
        a_ids = self.encode([" " + a for a in answers])
        n, L = len(prompts), self.max_length
        pad = tok.pad_token_id
        input_ids = torch.full((n, L), pad, dtype=torch.long)  # [n, L]
        labels = torch.full((n, L), -100, dtype=torch.long)  # [n, L]
        mask = torch.zeros((n, L), dtype=torch.long)  # [n, L]
        for i, (p, a) in enumerate(zip(p_ids, a_ids)):
            seq = [tok.bos_token_id, *p, *a, tok.eos_token_id]
            if len(seq) > L:
                raise ConfigError(f"Example {i} has {len(seq)} tokens, more than max_length={L}.")
            input_ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
            start = 1 + len(p)
            labels[i, start : len(seq)] = input_ids[i, start : len(seq)]
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    def tensors(self, fact_ids: list[int], kind: str = "answer") -> dict[str, torch.Tensor]:
        """Tokenized facts; ``kind`` ∈ answer, paraphrase, refusal, alternate, perturbed (``n_perturbed`` rows
        per fact).

        Adds ``fact_id`` (``[n]``) so every row can be traced to its fact.
        """
        facts = [self.facts[i] for i in fact_ids]
        if kind == "perturbed":
            rows = [(f, p) for f in facts for p in f.perturbed]
        elif kind in ("answer", "paraphrase", "refusal", "alternate"):
            rows = [(f, getattr(f, kind)) for f in facts]
        else:
            raise ConfigError(f"Unknown answer kind {kind!r}; use answer, paraphrase, refusal, alternate or perturbed.")
        out = self.tokenize([self.prompt(f) for f, _ in rows], [a for _, a in rows])
        out["fact_id"] = torch.tensor([f.fact_id for f, _ in rows], dtype=torch.long)
        return out

    def split(self, which: str, forget_fraction: float = 0.10, with_refusal: bool | None = None,
              limit: int | None = None) -> Split:
        """A :class:`Split` of ``which`` ∈ {all, forget, retain, holdout}; the forget split also carries
        the template refusal (``refusal_input_ids``/``_attention_mask``/``_labels``) and the alternate answer
        (``alternate_*``) that FLAT, IdkDPO and DPO prefer."""
        ids = self.ids(which, forget_fraction, limit)
        tensors = self.tensors(ids, "answer")
        if with_refusal if with_refusal is not None else which == "forget":
            for kind in ("refusal", "alternate"):
                extra = self.tensors(ids, kind)
                tensors.update({f"{kind}_{k}": extra[k] for k in ("input_ids", "attention_mask", "labels")})
        return Split(tensors, name=which, shuffle=True)

    def dataset(self, which: str = "all", forget_fraction: float = 0.10) -> Dataset:
        """An ``lm`` :class:`Dataset` whose ``train`` split is the ``which`` facts (loss on answers only)."""
        return Dataset(f"facts-{which}", {"train": self.split(which, forget_fraction, with_refusal=False)}, task="lm",
                       info=self.describe(which=which, forget_fraction=forget_fraction), tokenizer=self.tokenizer)

    def describe(self, **extra) -> dict:
        return {"benchmark": "facts", "n_entities": self.n_entities, "n_holdout": self.n_holdout,
                "n_facts": len(self.ids("all")),
                "n_perturbed": self.n_perturbed, "seed": self.seed, "max_length": self.max_length, **extra}

    def __repr__(self) -> str:
        return (f"FactsBenchmark(n_entities={self.n_entities}, n_holdout={self.n_holdout}, n_facts={len(self.facts)}, "
                f"seed={self.seed})")


def general_text(n_docs: int = 40, block_size: int = 64, seed: int = 1, tokenizer=None) -> Split:
    """Held-out general text (generated ``stories``, a seed the base never trained on): model utility."""
    from ..data import load

    return load("stories", n_docs=n_docs, n_val_docs=0, block_size=block_size, seed=seed, tokenizer=tokenizer).train


@functools.lru_cache(maxsize=8)
def cached_benchmark(n_entities: int = 40, n_perturbed: int = 3, seed: int = 0) -> FactsBenchmark:
    """A memoized default-tokenizer benchmark (tokenizing is cheap, but views and probes share it)."""
    return FactsBenchmark(n_entities, n_perturbed, seed)
