"""Presets, theory models, HF save/load round trips, matrices conventions."""

from __future__ import annotations

import torch

from workbench import Run, models, weight_matrices


def test_presets_have_the_advertised_sizes():
    sizes = {p: sum(x.numel() for x in models.build(p).parameters()) for p in ("gpt2-1m", "llama-1m")}
    assert all(5e5 < n < 2e6 for n in sizes.values()), sizes
    assert 5e6 < sum(x.numel() for x in models.build("gpt2-10m").parameters()) < 2e7


def test_build_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a, b = models.build("llama-1m", seed=1), models.build("llama-1m", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_save_load_round_trip(tmp_path, stories):
    run = Run("gpt2-1m", stories, batch_size=4, eval_every=0)
    run.run(2, progress=False)
    models.save(run.model, tmp_path / "base", tokenizer=stories.tokenizer, run_id=run.run_id)
    again = models.load(tmp_path / "base")
    for (n, p), (_, q) in zip(run.model.named_parameters(), again.named_parameters()):
        assert torch.equal(p.cpu(), q), n
    assert again.workbench_origin["run_id"] == run.run_id
    child = Run(again, stories)
    assert child.parent == run.run_id  # lineage


def test_theory_models_forward():
    m = models.mlp(d_in=4, d_hidden=8, d_out=2)
    assert m(torch.randn(3, 4)).shape == (3, 2) and m.hidden(torch.randn(3, 4)).shape == (3, 8)
    tok = models.mlp(d_in=8, d_hidden=16, d_out=97, vocab=97)  # modular arithmetic: tokens [a, b]
    assert tok(torch.tensor([[3, 5], [96, 1]])).shape == (2, 97)
    r = models.rnn(d_in=3, n_hidden=16, d_out=2)
    assert r(torch.randn(2, 5, 3)).shape == (2, 5, 2) and r.hidden(torch.randn(2, 5, 3)).shape == (2, 16)
    assert set(weight_matrices(r)) == {"weight_in", "weight_rec", "weight_out"}


def test_conv1d_is_transposed_to_out_in():
    gpt2 = models.build("gpt2-1m")
    mats = weight_matrices(gpt2)
    assert mats["transformer.h.0.attn.c_attn.weight"].shape == (3 * 128, 128)  # [out, in]
    assert mats["transformer.h.0.mlp.c_fc.weight"].shape == (512, 128)


def test_overrides_are_validated_against_the_config_class():
    import pytest

    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"did you mean 'n_layer'\?.*Valid keys: .*n_embd"):
        models.build("gpt2-1m", n_layers=2)
    assert models.build("gpt2-1m", n_layer=2).config.n_layer == 2
    assert models.build("gpt2-1m", hidden_size=64).config.n_embd == 64  # HF aliases count
    assert models.build("llama-1m", num_hidden_layers=2).config.num_hidden_layers == 2


def test_save_replaces_a_saved_model_atomically_and_nothing_else(tmp_path):
    import os
    import stat

    import pytest

    from workbench.errors import ConfigError

    small = dict(n_layer=1, n_embd=16, n_head=2, vocab_size=64)
    a, b = models.build("gpt2-1m", seed=1, **small), models.build("gpt2-1m", seed=2, **small)
    models.save(a, tmp_path / "m", run_id="first")
    models.save(b, tmp_path / "m", run_id="second")
    again = models.load(tmp_path / "m")
    assert again.workbench_origin["run_id"] == "second"
    assert torch.equal(again.transformer.wte.weight, b.transformer.wte.weight)
    assert sorted(os.listdir(tmp_path)) == ["m"]  # the old copy is gone, no temporaries
    assert stat.S_IMODE(os.stat(tmp_path / "m" / "config.json").st_mode) & 0o044 == 0o044  # not 0600
    (tmp_path / "m" / "runs").mkdir()  # someone's folder inside: a save would delete it
    with pytest.raises(ConfigError, match="Refusing to overwrite"):
        models.save(a, tmp_path / "m")
    assert (tmp_path / "m" / "runs").is_dir()
