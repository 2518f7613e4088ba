"""Small models for theory experiments: an MLP and a ReLU RNN with named weight matrices.

The RNN follows "How connectivity structure shapes rich and lazy learning": hidden state
``h_{t+1} = (1-α) h_t + α·relu(W_rec h_t + W_in x_t + b)``, readout ``y_t = W_out h_t``, with
``α = dt/τ``. Its matrices are ``rnn.weight_in [N, d_in]``, ``rnn.weight_rec [N, N]``,
``rnn.weight_out [d_out, N]`` — ``weight_rec`` is the one whose rank the init dials change.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import rng
from ..errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "linear": nn.Identity}


class MLP(nn.Module):
    """Fully connected network ``d_in → hidden × depth → d_out``; ``embed`` for integer inputs."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, depth: int = 2, activation: str = "relu",
                 bias: bool = True, vocab: int | None = None, n_tokens: int = 2):
        super().__init__()
        if min(d_in, d_hidden, d_out, depth) < 1:
            raise ConfigError(f"MLP sizes must be ≥ 1, got d_in={d_in}, d_hidden={d_hidden}, d_out={d_out}, depth={depth}.")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"Unknown activation {activation!r}; use one of {list(ACTIVATIONS)}.")
        # Integer inputs [batch, n_tokens] are embedded and concatenated (modular arithmetic).
        # With ``vocab``, d_in is the embedding size per token and the first layer sees n_tokens * d_in.
        self.embed = nn.Embedding(vocab, d_in) if vocab else None
        width_in = d_in * n_tokens if vocab else d_in
        layers = []
        for i in range(depth):
            layers += [nn.Linear(width_in if i == 0 else d_hidden, d_hidden, bias=bias), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(d_hidden, d_out, bias=bias))
        self.net = nn.Sequential(*layers)
        self._d_in = d_in

    def hidden(self, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Activations after hidden layer ``layer`` (representation-alignment probes)."""
        x = self._inputs(x)
        acts = []
        for module in self.net:
            x = module(x)
            if not isinstance(module, nn.Linear):
                acts.append(x)
        return acts[layer]

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x).flatten(1)  # [batch, n_tokens * d_embed]
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._inputs(x))


class ReLURNN(nn.Module):
    """Leaky ReLU RNN over ``x [batch, time, d_in]`` → ``y [batch, time, d_out]``."""

    def __init__(self, d_in: int, n_hidden: int, d_out: int, alpha: float = 0.2, bias: bool = True):
        super().__init__()
        if min(d_in, n_hidden, d_out) < 1 or not 0 < alpha <= 1:
            raise ConfigError(f"RNN needs sizes ≥ 1 and 0 < alpha ≤ 1, got d_in={d_in}, n_hidden={n_hidden}, d_out={d_out}, alpha={alpha}.")
        self.alpha = alpha
        self.weight_in = nn.Parameter(torch.randn(n_hidden, d_in) / d_in**0.5)
        self.weight_rec = nn.Parameter(torch.randn(n_hidden, n_hidden) * (1.25 / n_hidden**0.5))
        self.bias = nn.Parameter(torch.zeros(n_hidden)) if bias else None
        self.weight_out = nn.Parameter(torch.randn(d_out, n_hidden) / n_hidden)

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """All hidden states ``[batch, time, n_hidden]``."""
        batch, time, _ = x.shape
        h = x.new_zeros(batch, self.weight_rec.shape[0])
        drive = x @ self.weight_in.T  # [batch, time, N]
        if self.bias is not None:
            drive = drive + self.bias
        states = []
        for t in range(time):
            h = (1 - self.alpha) * h + self.alpha * torch.relu(h @ self.weight_rec.T + drive[:, t])
            states.append(h)
        return torch.stack(states, dim=1)

    def hidden(self, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Final hidden state ``[batch, N]`` (representation probes)."""
        return self.hidden_states(x)[:, -1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(x) @ self.weight_out.T


def mlp(d_in: int = 16, d_hidden: int = 64, d_out: int = 1, depth: int = 2, activation: str = "relu", seed: int = 0,
        vocab: int | None = None, n_tokens: int = 2, **_) -> MLP:
    with rng.seeded(seed):
        model = MLP(d_in, d_hidden, d_out, depth, activation, vocab=vocab, n_tokens=n_tokens)
    model.workbench_origin = {"builder": "mlp", "d_in": d_in, "d_hidden": d_hidden, "d_out": d_out, "depth": depth,
                              "activation": activation, "seed": seed, "vocab": vocab, "n_tokens": n_tokens}
    return model


def rnn(d_in: int = 3, n_hidden: int = 100, d_out: int = 2, alpha: float = 0.2, seed: int = 0, **_) -> ReLURNN:
    with rng.seeded(seed):
        model = ReLURNN(d_in, n_hidden, d_out, alpha)
    model.workbench_origin = {"builder": "rnn", "d_in": d_in, "n_hidden": n_hidden, "d_out": d_out, "alpha": alpha, "seed": seed}
    return model
