"""Vocabulary expansion: add tokens to a Hugging Face causal LM and its tokenizer, and initialize them.

"An Empirical Comparison of Vocabulary Expansion and Initialization Approaches" finds that new
embeddings should sit inside the convex hull of the existing ones; a multivariate normal fitted to the
existing embeddings (Hewitt, 2021) is a strong simple baseline. Inits (``EMBEDDING_INITS``):

=======================  ===========================================================================
``zero``                 all-zero rows
``mean``                 the mean of the existing rows
``multivariate_normal``  samples of N(μ, cov_scale · Σ), μ/Σ the mean and covariance of existing rows
                         (Hewitt uses cov_scale = 1e-5, the default: new tokens stay near the mean)
``convex``               random convex combinations Σ_i λ_i e_i, λ ~ Dirichlet(1) over ``k`` random
                         existing rows (all rows when ``k`` is None)
=======================  ===========================================================================

The input embedding is resized with ``model.resize_token_embeddings`` (which also resizes a tied
lm_head); an *untied* output embedding is initialized the same way from its own rows.

>>> from workbench.models import build                                    # doctest: +SKIP
>>> ids = expand_vocabulary(model, tokenizer, ["<tool>", "</tool>"], init="multivariate_normal")  # doctest: +SKIP
"""

from __future__ import annotations

import torch

from ..errors import ConfigError, unknown_name

EMBEDDING_INITS = ("zero", "mean", "multivariate_normal", "convex")


def new_rows(existing: torch.Tensor, n: int, init: str, generator: torch.Generator, cov_scale: float = 1e-5,
             k: int | None = None) -> torch.Tensor:
    """``n`` new embedding rows ``[n, d]`` from the ``existing`` rows ``[V, d]`` by ``init``."""
    e = existing.detach().float().cpu()  # [V, d]
    v, d = e.shape
    if init == "zero":
        return torch.zeros(n, d)
    mu = e.mean(0)  # [d]
    if init == "mean":
        return mu.expand(n, d).clone()
    if init == "multivariate_normal":
        centered = e - mu
        sigma = centered.T @ centered / max(1, v - 1)  # [d, d]
        sigma = cov_scale * sigma + 1e-8 * torch.eye(d) * sigma.diagonal().mean().clamp(min=1e-12)
        chol = torch.linalg.cholesky(sigma.double()).float()
        z = torch.randn(n, d, generator=generator)
        return mu + z @ chol.T
    if init == "convex":
        kk = v if k is None else int(k)
        idx = torch.stack([torch.randperm(v, generator=generator)[:kk] for _ in range(n)])  # [n, k]
        gamma = -torch.log(torch.rand(n, kk, generator=generator).clamp(min=1e-12))  # Exp(1) → Dirichlet(1)
        lam = gamma / gamma.sum(1, keepdim=True)  # [n, k], rows sum to 1
        return torch.einsum("nk,nkd->nd", lam, e[idx])
    raise unknown_name("embedding init", init, list(EMBEDDING_INITS))


def expand_vocabulary(model, tokenizer, tokens: list[str], init: str = "mean", seed: int = 0, cov_scale: float = 1e-5,
                      k: int | None = None, special: bool = False) -> list[int]:
    """Add ``tokens`` to ``tokenizer`` and ``model``; initialize their embeddings by ``init``; return their ids.

    Everything is validated first (init name, token list, tokens already present, ``k``, ``cov_scale``):
    on bad input nothing is modified. The new rows of the input embedding (and of an untied lm_head) are
    computed from the rows that existed before, with a generator seeded by ``seed``.
    """
    if init not in EMBEDDING_INITS:
        raise unknown_name("embedding init", init, list(EMBEDDING_INITS))
    if isinstance(tokens, str) or not tokens or not all(isinstance(t, str) and t for t in tokens):
        raise ConfigError(f"tokens must be a non-empty list of non-empty strings, got {tokens!r}.")
    if len(set(tokens)) != len(tokens):
        raise ConfigError(f"tokens contains duplicates: {tokens!r}.")
    vocab = tokenizer.get_vocab()
    present = [t for t in tokens if t in vocab]
    if present:
        raise ConfigError(f"Token(s) {present} are already in the tokenizer's vocabulary; pass only new tokens.")
    if cov_scale <= 0:
        raise ConfigError(f"cov_scale must be > 0, got {cov_scale}.")
    emb_in = model.get_input_embeddings()
    if emb_in is None or not hasattr(emb_in, "weight"):
        raise ConfigError(f"{type(model).__name__} has no input embedding table (get_input_embeddings()); cannot expand it.")
    old_in = emb_in.weight.detach().clone()  # [V, d]
    if k is not None and not 1 <= int(k) <= old_in.shape[0]:
        raise ConfigError(f"k must be between 1 and the number of existing embeddings ({old_in.shape[0]}), got {k}.")
    emb_out = model.get_output_embeddings()
    tied = emb_out is None or emb_out.weight is emb_in.weight or emb_out.weight.data_ptr() == emb_in.weight.data_ptr()
    old_out = None if tied else emb_out.weight.detach().clone()

    n_added = tokenizer.add_tokens(list(tokens), special_tokens=special)
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    if n_added != len(tokens):  # pragma: no cover - guarded by the check above
        raise ConfigError(f"The tokenizer added {n_added} of {len(tokens)} tokens.")
    size = max(len(tokenizer), old_in.shape[0], max(ids) + 1)
    model.resize_token_embeddings(size, mean_resizing=False)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        w_in = model.get_input_embeddings().weight
        w_in[ids] = new_rows(old_in, len(ids), init, gen, cov_scale, k).to(w_in)
        if not tied:
            w_out = model.get_output_embeddings().weight
            w_out[ids] = new_rows(old_out, len(ids), init, gen, cov_scale, k).to(w_out)
            bias = getattr(model.get_output_embeddings(), "bias", None)
            if bias is not None:
                bias[ids] = 0.0
    if hasattr(model, "config"):
        model.config.vocab_size = size
    origin = getattr(model, "workbench_origin", None)
    if isinstance(origin, dict):
        origin["vocab_size"] = size
        origin.setdefault("init", []).append({"recipe": "vocab", "init": init, "tokens": list(tokens), "seed": seed})
    return list(ids)
