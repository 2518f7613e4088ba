"""TOFU-style evaluation of an unlearned model against the retrained oracle, as an ``xarray.Dataset``.

Per fact (dims ``forget_fact`` / ``retain_fact``, coords = fact ids):

* ``prob`` — P(answer | question)^(1/|answer|), the per-token geometric-mean probability of the answer;
* ``rouge`` — ROUGE-L recall of the greedy answer against the true answer (:mod:`.rouge`);
* ``truth_ratio`` — R = mean_k P(perturbed_k)^(1/|·|) / P(paraphrase)^(1/|·|) (TOFU): ~1 when the
  model cannot tell the true value from wrong ones, ≪ 1 when it knows the fact.

Scalars: ``<split>_prob``, ``<split>_rouge``; ``forget_truth`` = mean min(R, 1/R) and ``retain_truth`` =
mean max(0, 1 − R) (TOFU's conventions); ``general_prob`` = exp(−mean token NLL) on held-out stories;
``model_utility`` = harmonic mean of retain prob, retain ROUGE, retain truth and general prob;
with an oracle: ``forget_quality`` = KS-test p-value between the model's and the oracle's forget truth
ratios (scipy ``ks_2samp``; 1 = indistinguishable from the oracle) and ``kl_oracle_<split>`` = mean over
answer tokens of KL(p_oracle ‖ p_model).

Privacy and memorization (:mod:`.privacy`; forget facts = members, holdout facts = non-members, with
``holdout=True``): ``mia_<attack>_auc`` for loss, zlib, min_k, min_k_plus_plus, gradnorm and (with an
oracle) reference, each with DeLong 95 % bounds ``_low``/``_high``; ``privleak`` (with an oracle);
``extraction_strength`` and ``exact_memorization`` of the forget answers.

>>> # ds = evaluate(model, bench, forget_fraction=0.1, oracle=oracle, general=general_split)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr
from scipy.stats import ks_2samp

from ..data.base import Split, to_device
from ..errors import ConfigError
from .facts import FactsBenchmark
from .losses import token_kl, token_logprobs
from .privacy import OracleReference, oracle_reference, privacy_metrics
from .rouge import rouge_l


def _device(model) -> torch.device:
    return next(model.parameters()).device


class _eval_mode:
    def __init__(self, model):
        self.model, self.was = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was)


@torch.no_grad()
def answer_nll(model, tensors: dict, batch_size: int = 64) -> np.ndarray:
    """Mean NLL per answer token of every row ``[n]`` (labels -100 elsewhere)."""
    out = []
    dev = _device(model)
    n = len(tensors["input_ids"])
    with _eval_mode(model):
        for i in range(0, n, batch_size):
            batch = to_device({k: v[i : i + batch_size] for k, v in tensors.items() if k != "fact_id"}, dev)
            logp, mask, _ = token_logprobs(model, batch)
            out.append((-logp.sum(-1) / mask.sum(-1).clamp(min=1)).cpu())
    return torch.cat(out).double().numpy()


def answer_prob(model, bench: FactsBenchmark, fact_ids: list[int]) -> np.ndarray:
    """P(answer|question)^(1/|answer|) per fact ``[n]``."""
    return np.exp(-answer_nll(model, bench.tensors(fact_ids, "answer")))


def truth_ratio(model, bench: FactsBenchmark, fact_ids: list[int]) -> np.ndarray:
    """TOFU truth ratio per fact ``[n]``: mean over perturbed answers of their normalized probability over the
    paraphrase's."""
    return truth_ratio_of(model, bench.tensors(fact_ids, "paraphrase"), bench.tensors(fact_ids, "perturbed"), len(fact_ids))


def truth_ratio_of(model, paraphrase: dict, perturbed: dict, n: int) -> np.ndarray:
    """The truth ratio from already tokenized paraphrases ``[n]`` and perturbed answers ``[n·k]``."""
    para = np.exp(-answer_nll(model, paraphrase))  # [n]
    pert = np.exp(-answer_nll(model, perturbed)).reshape(n, -1)  # [n, k]
    return pert.mean(-1) / np.maximum(para, 1e-300)


@torch.no_grad()
def greedy_answers(model, bench: FactsBenchmark, fact_ids: list[int], batch_size: int = 64) -> list[str]:
    """The model's greedy answer to each question (left-padded batched ``generate``), decoded."""
    tok = bench.tokenizer
    prompts = [bench.encode([bench.prompt(bench.facts[i])])[0] for i in fact_ids]
    max_new = bench.max_length - min(len(p) for p in prompts)
    dev = _device(model)
    texts: list[str] = []
    with _eval_mode(model):
        for s in range(0, len(prompts), batch_size):
            chunk = [[tok.bos_token_id, *p] for p in prompts[s : s + batch_size]]
            width = max(len(c) for c in chunk)
            ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)  # [b, width]
            mask = torch.zeros_like(ids)
            for r, c in enumerate(chunk):
                ids[r, width - len(c):] = torch.tensor(c)
                mask[r, width - len(c):] = 1
            out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), max_new_tokens=max_new,
                                 do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            for row in out[:, width:].tolist():
                if tok.eos_token_id in row:
                    row = row[: row.index(tok.eos_token_id)]
                texts.append(tok.decode(row, skip_special_tokens=True).strip())
    return texts


def rouge_recall(model, bench: FactsBenchmark, fact_ids: list[int]) -> np.ndarray:
    preds = greedy_answers(model, bench, fact_ids)
    return np.array([rouge_l(bench.facts[i].answer, p)["recall"] for i, p in zip(fact_ids, preds)])


@torch.no_grad()
def kl_to_oracle(model, oracle, tensors: dict, batch_size: int = 64) -> float:
    """Mean over answer tokens of KL(p_oracle ‖ p_model) (next-token distributions)."""
    if oracle is None:
        raise ConfigError("KL to the oracle needs the oracle model (retrained without the forget set): pass oracle=.")
    dev = _device(model)
    total, count = 0.0, 0
    with _eval_mode(model), _eval_mode(oracle):
        for i in range(0, len(tensors["input_ids"]), batch_size):
            b = to_device({k: v[i : i + batch_size] for k, v in tensors.items() if k != "fact_id"}, dev)
            mask = (b["labels"][:, 1:] != -100).float()  # [B, T-1]
            lm = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1]
            lo = oracle(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1]
            n = float(mask.sum())
            total += float(token_kl(lo, lm, mask)) * n
            count += n
    return total / max(count, 1.0)


def forget_quality(model_or_ratios, bench: FactsBenchmark | None = None, forget_fraction: float = 0.10, oracle=None) -> float:
    """KS-test p-value of the model's forget truth ratios against the oracle's (1 = like the oracle).

    Pass a model with ``bench`` and ``oracle`` (a model or its truth ratios), or two arrays of ratios.
    """
    if oracle is None:
        raise ConfigError("Forget quality compares against the oracle (the model retrained without the forget set); "
                          "pass oracle= (e.g. prepare(...).oracle) or its forget truth ratios.")
    if isinstance(model_or_ratios, torch.nn.Module):
        if bench is None:
            raise ConfigError("forget_quality(model, ...) needs the benchmark (bench=) to compute truth ratios.")
        ids = bench.forget_ids(forget_fraction)
        mine = truth_ratio(model_or_ratios, bench, ids)
        theirs = truth_ratio(oracle, bench, ids) if isinstance(oracle, torch.nn.Module) else np.asarray(oracle)
    else:
        mine, theirs = np.asarray(model_or_ratios), np.asarray(oracle)
    if len(mine) == 0 or len(theirs) == 0:
        raise ConfigError("Forget quality needs at least one forget truth ratio on each side.")
    return float(ks_2samp(mine, theirs).pvalue)


@torch.no_grad()
def general_prob(model, split: Split, batch_size: int = 32, limit: int = 8) -> float:
    """exp(−mean token NLL) on held-out general text (at most ``limit`` batches)."""
    dev = _device(model)
    total, count = 0.0, 0
    with _eval_mode(model):
        for batch in split.batches(batch_size, limit=limit):
            logp, mask, _ = token_logprobs(model, to_device(batch, dev))
            total += float(-logp.sum())
            count += int(mask.sum())
    return math.exp(-total / max(count, 1))


def _hmean(values: list[float]) -> float:
    vals = [max(float(v), 0.0) for v in values]
    return 0.0 if any(v == 0 for v in vals) else len(vals) / sum(1 / v for v in vals)


def evaluate(model, bench: FactsBenchmark, forget_fraction: float = 0.10, oracle=None, general: Split | None = None,
             retain_limit: int | None = 40, rouge: bool = True, oracle_ratios: np.ndarray | None = None,
             holdout: bool = True, gradnorm: bool = True, mia_k: float = 0.4, privleak_attack: str = "min_k",
             reference: OracleReference | None = None) -> xr.Dataset:
    """All metrics of ``model`` (see the module docstring). Without ``oracle``, forget quality, KL, the
    Reference attack and privleak are left out.

    ``retain_limit`` evaluates only the first facts of the retain set (speed); ``oracle_ratios`` and
    ``reference`` (:func:`workbench.unlearn.privacy.oracle_reference`) reuse the oracle's numbers across
    calls; ``holdout=False`` skips the privacy metrics, ``gradnorm=False`` the (one backward per answer)
    GradNorm attack; ``mia_k`` is the Min-K % fraction.
    """
    f_ids = bench.forget_ids(forget_fraction)
    r_ids = bench.retain_ids(forget_fraction)[:retain_limit]
    data, scalars = {}, {}
    for split, ids in (("forget", f_ids), ("retain", r_ids)):
        dim = f"{split}_fact"
        prob = answer_prob(model, bench, ids)
        tr = truth_ratio(model, bench, ids)
        data[f"prob_{split}"] = (dim, prob)
        data[f"truth_ratio_{split}"] = (dim, tr)
        scalars[f"{split}_prob"] = float(prob.mean())
        if rouge:
            rl = rouge_recall(model, bench, ids)
            data[f"rouge_{split}"] = (dim, rl)
            scalars[f"{split}_rouge"] = float(rl.mean())
    scalars["forget_truth"] = float(np.minimum(data["truth_ratio_forget"][1], 1 / data["truth_ratio_forget"][1]).mean())
    scalars["retain_truth"] = float(np.maximum(0.0, 1 - data["truth_ratio_retain"][1]).mean())
    parts = [scalars["retain_prob"], scalars["retain_truth"]] + ([scalars["retain_rouge"]] if rouge else [])
    if general is not None:
        scalars["general_prob"] = general_prob(model, general)
        parts.append(scalars["general_prob"])
    scalars["model_utility"] = _hmean(parts)
    if oracle is not None or oracle_ratios is not None:
        ref = oracle_ratios if oracle_ratios is not None else truth_ratio(oracle, bench, f_ids)
        scalars["forget_quality"] = forget_quality(data["truth_ratio_forget"][1], oracle=ref)
    if oracle is not None:
        scalars["kl_oracle_forget"] = kl_to_oracle(model, oracle, bench.tensors(f_ids))
        scalars["kl_oracle_retain"] = kl_to_oracle(model, oracle, bench.tensors(r_ids))
    h_ids = bench.holdout_ids() if holdout else []
    if holdout:
        if reference is None and oracle is not None:
            reference = oracle_reference(oracle, bench, f_ids, h_ids, k=mia_k, gradnorm=gradnorm)
        scalars.update(privacy_metrics(model, bench, f_ids, h_ids, reference, k=mia_k, gradnorm=gradnorm,
                                       privleak_attack=privleak_attack))
    ds = xr.Dataset({k: v for k, v in data.items()}, coords={"forget_fact": f_ids, "retain_fact": r_ids})
    for k, v in scalars.items():
        ds[k] = v
    ds.attrs.update(forget_fraction=float(forget_fraction), n_forget=len(f_ids), n_retain_eval=len(r_ids),
                    n_holdout=len(h_ids), mia_k=float(mia_k), privleak_attack=privleak_attack)
    return ds


__all__ = ["evaluate", "answer_prob", "truth_ratio", "truth_ratio_of", "forget_quality", "kl_to_oracle", "general_prob",
           "greedy_answers", "rouge_recall", "answer_nll"]
