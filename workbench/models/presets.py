"""Named model presets built from configs (no download): tiny GPT-2 and Llama causal LMs.

========================  ==========  ===============================================
preset                    params      shape
========================  ==========  ===============================================
gpt2-1m                   ~0.9 M      4 layers, d=128, 4 heads, ctx 128
gpt2-10m                  ~9.7 M      12 layers, d=256, 8 heads, ctx 256
gpt2-wide                 ~6.6 M      2 layers, d=512, 8 heads, ctx 128 (wide and shallow: r/d as in LLMs)
llama-1m                  ~0.9 M      4 layers, d=128, 4 heads, SwiGLU 344
llama-10m                 ~9.6 M      12 layers, d=256, 8 heads, SwiGLU 688
gpt2-small                ~124 M      GPT-2 small shape (12 × 768), vocab 50257 — benchmarks
========================  ==========  ===============================================

``vocab_size`` defaults to the built-in tokenizer's (512); pass ``data=`` (a text Dataset) to take its
tokenizer's size and special-token ids. Every model gets ``model.workbench_origin`` describing how to
rebuild it (records and checkpoints use it).
"""

from __future__ import annotations

import difflib
import inspect

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
)

from .. import rng
from ..errors import ConfigError
from ..registry import Registry

PRESETS = Registry("model preset", hint="Or pass a local model directory (models.load).")

DEFAULT_VOCAB = 512


def _gpt2(n_layer, n_embd, n_head, n_positions):
    def build(vocab_size, bos, eos, pad, **overrides):
        cfg = dict(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                   bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        cfg.update(overrides)
        return GPT2LMHeadModel(GPT2Config(**cfg))
    build.config_class = GPT2Config
    return build


def _llama(n_layer, hidden, heads, intermediate, ctx):
    def build(vocab_size, bos, eos, pad, **overrides):
        cfg = dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=n_layer,
                   num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=ctx,
                   bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=False)
        cfg.update(overrides)
        return LlamaForCausalLM(LlamaConfig(**cfg))
    build.config_class = LlamaConfig
    return build


PRESETS.register("gpt2-1m", _gpt2(4, 128, 4, 128), help="GPT-2-style, ~0.9M params", family="gpt2")
PRESETS.register("gpt2-10m", _gpt2(12, 256, 8, 256), help="GPT-2-style, ~9.7M params", family="gpt2")
PRESETS.register("gpt2-wide", _gpt2(2, 512, 8, 128), help="GPT-2-style, 2 layers × d=512, ~6.6M params: LoRA "
                 "rank-to-width ratios r/d as small as on 768–4096-wide models", family="gpt2")
PRESETS.register("llama-1m", _llama(4, 128, 4, 344, 128), help="Llama-style, ~0.9M params", family="llama")
PRESETS.register("llama-10m", _llama(12, 256, 8, 688, 256), help="Llama-style, ~9.6M params", family="llama")
PRESETS.register("gpt2-small", _gpt2(12, 768, 12, 1024), help="GPT-2 small shape (124M), for benchmarks", family="gpt2",
                 vocab_size=50257)


def config_keys(preset: str) -> tuple[list[str], list[str]]:
    """The config fields an override may set for ``preset``: (its model's own fields and aliases, the
    fields every Hugging Face config has)."""
    config_class = PRESETS.entry(preset).obj.config_class
    common = set(PretrainedConfig().to_dict()) | set(inspect.signature(PretrainedConfig.__init__).parameters)
    own = [k for k in inspect.signature(config_class.__init__).parameters if k not in common | {"self", "kwargs"}]
    own += [k for k in getattr(config_class, "attribute_map", {}) if k not in own]
    return own, sorted(common - {"self", "kwargs"})


def check_overrides(preset: str, overrides: dict) -> None:
    """Refuse override names that the preset's config class does not have (a typo would be ignored)."""
    own, common = config_keys(preset)
    unknown = [k for k in overrides if k not in own and k not in common]
    if not unknown:
        return
    hints = [f"{k!r} → did you mean {difflib.get_close_matches(k, own + common, n=1)[0]!r}?"
             for k in unknown if difflib.get_close_matches(k, own + common, n=1)]
    config_class = PRESETS.entry(preset).obj.config_class.__name__
    raise ConfigError(f"Unknown config override(s) {unknown} for preset {preset!r} ({config_class}). "
                      + (" ".join(hints) + " " if hints else "")
                      + f"Valid keys: {', '.join(own)} (or any common Hugging Face config field).")


def build(preset: str, data=None, vocab_size: int | None = None, seed: int = 0, dtype: torch.dtype | None = None,
          **overrides) -> torch.nn.Module:
    """Build preset ``preset`` with freshly initialized weights (seeded, reproducible).

    Parameters
    ----------
    data : a text Dataset whose tokenizer sets ``vocab_size`` and the bos/eos/pad ids.
    vocab_size : override the vocabulary size.
    seed : seeds the weight init (``torch.manual_seed`` inside a forked RNG; global state is untouched).
    **overrides : any config field of the underlying HF config (``n_layer=2``, ``hidden_size=64`` …).
    """
    entry = PRESETS.entry(preset)
    check_overrides(preset, overrides)
    tok = getattr(data, "tokenizer", None)
    vocab = vocab_size or (len(tok) if tok is not None else entry.meta.get("vocab_size", DEFAULT_VOCAB))
    if vocab < 2:
        raise ConfigError(f"vocab_size must be ≥ 2, got {vocab}.")
    ids = dict(bos=0, eos=0, pad=0)
    if tok is not None:
        ids = dict(bos=tok.bos_token_id if tok.bos_token_id is not None else 0,
                   eos=tok.eos_token_id if tok.eos_token_id is not None else 0,
                   pad=tok.pad_token_id if tok.pad_token_id is not None else 0)
    with rng.seeded(seed):  # under the runs' RNG lock: building never mixes with a run training elsewhere
        try:
            model = entry.obj(vocab, **ids, **overrides)
        except TypeError as exc:
            raise ConfigError(f"Bad override for preset {preset!r}: {exc}") from None
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"  # GPT2LMHeadModel's class name maps to no loss; avoid transformers' warning
    if dtype is not None:
        model.to(dtype)
    model.workbench_origin = {"preset": preset, "seed": seed, "vocab_size": vocab, "overrides": overrides}
    return model
