"""Per-sequence quantities every unlearning loss is built from (answer tokens only, padding-proof).

All functions read a batch with ``input_ids``/``attention_mask``/``labels`` (``labels`` = ``-100`` on the
prompt and on padding, as built by :mod:`workbench.unlearn.facts`); ``prefix="refusal_"`` reads the
paired template answer. Sequence sums over label positions do not depend on how much padding follows
(right padding, causal attention), which the unit tests check.

>>> # logp, n = sequence_logprob(model, batch)      # [batch], [batch]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _fields(batch: dict, prefix: str = "") -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    return batch[f"{prefix}input_ids"], batch.get(f"{prefix}attention_mask"), batch[f"{prefix}labels"]


def token_logprobs(model, batch: dict, prefix: str = "", output_hidden_states: bool = False):
    """Log-probability of every label token: ``(logp [B, T-1], mask [B, T-1], outputs)``.

    ``logp[b, t]`` is ``log π(labels[b, t+1] | tokens ≤ t)``; ``mask`` is 1 where that label counts.
    """
    ids, attn, labels = _fields(batch, prefix)
    out = model(input_ids=ids, attention_mask=attn, output_hidden_states=output_hidden_states)
    logits = out.logits[:, :-1].float()  # [B, T-1, V]
    target = labels[:, 1:]  # [B, T-1]
    mask = target != -100  # [B, T-1]
    logp = torch.log_softmax(logits, dim=-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [B, T-1]
    return logp * mask, mask, out


def sequence_logprob(model, batch: dict, prefix: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """``(log π(y|x) summed over answer tokens [B], number of answer tokens [B])``."""
    logp, mask, _ = token_logprobs(model, batch, prefix)
    return logp.sum(-1), mask.sum(-1)


def mean_token_nll(model, batch: dict, prefix: str = "") -> torch.Tensor:
    """Mean next-token cross-entropy over all answer tokens of the batch (the usual LM loss)."""
    logp, mask, _ = token_logprobs(model, batch, prefix)
    return -logp.sum() / mask.sum().clamp(min=1)


def mean_token_prob(model, batch: dict, prefix: str = "") -> torch.Tensor:
    """Per-sequence mean probability of the answer tokens ``[B]`` (FLAT's ``P(y|x; θ)``)."""
    logp, mask, _ = token_logprobs(model, batch, prefix)
    return (logp.exp() * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def token_kl(p_logits: torch.Tensor, q_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over masked positions of KL(p ‖ q) between two logit tensors ``[B, T, V]``."""
    lp = torch.log_softmax(p_logits.float(), -1)
    lq = torch.log_softmax(q_logits.float(), -1)
    kl = (lp.exp() * (lp - lq)).sum(-1)  # [B, T]
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + e^x)``, stable (the NPO/SimNPO building block)."""
    return F.softplus(x)
