"""GPU check: train the ``gpt2-small`` preset in bf16 autocast, run the spectra and intruder probes on the
device, and print steps/s, tokens/s, model FLOPs utilisation (MFU) and the probes' overhead.

    python benchmarks/gpu_check.py                 # on the GPU (device auto: CUDA when present); < 5 min
    python benchmarks/gpu_check.py --small         # CPU-sized: gpt2-1m, a few steps (what the tests run)
    python benchmarks/gpu_check.py --json out.json --peak-flops 989e12
    python benchmarks/gpu_check.py --compile --warmup 10   # the same through torch.compile
    python benchmarks/gpu_check.py --no-fsdp       # skip the sharded (FSDP) part

After the one-device check it runs the same check sharded: ``strategy="fsdp"`` (FSDP2) over every visible
GPU (one rank per GPU, nccl; on one GPU a world of 1, which still runs the whole sharded path: DTensor
parameters, gathered probes, the full state gathered for a checkpoint), launched by ``torchrun``; on a CPU,
two gloo processes (the fallback the tests run). It prints the same figures per world, plus each rank's
peak memory and the time to gather the full state (what a checkpoint costs); MFU there is per device.

What it measures, honestly:
* the workbench's own loop (``Run.run``: batch drawn as f(seed, i), autocast, clipping, AdamW, one history
  row per step), timed after ``--warmup`` steps, with the device synchronised around the timed window;
* the data is random token ids over the preset's vocabulary (50257 for gpt2-small): throughput does not
  depend on what the tokens say, and nothing is downloaded;
* MFU = 6·N·tokens/s / peak, N = the model's parameters (the usual "6N" estimate; ``mfu_attention`` adds
  the attention matmuls, 12·layers·d_model·seq per token). The peak is dense bf16 from a table by device
  name (``--peak-flops`` overrides). On a CPU no vendor peak applies: the peak is *measured* with a large
  fp32 matmul (``peak_source`` says so), so the CPU figure is a fraction of this machine's matmul speed;
* probes: the full spectra (``model_spectra``), the top-k spectra (``top_k``) and the intruder probe
  (``SpectraProbe`` against W0) are each timed on the device, then the run trains with the SpectraProbe
  attached every ``--probe-every`` steps: ``probe_overhead`` = that time / the time without it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench import Run, devices, distributed, fsdp  # noqa: E402
from workbench.data.base import Dataset, Split  # noqa: E402
from workbench.spectra import SpectraProbe, model_spectra  # noqa: E402

#: dense bf16 peak FLOP/s by device name (without sparsity); the first key found in the name wins
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "GH200": 989e12, "B200": 2250e12, "A100": 312e12,
             "A800": 312e12, "L40S": 362e12, "L40": 181e12, "A10G": 70e12, "A10": 125e12, "L4": 121e12,
             "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12, "T4": 65e12}

FULL = dict(preset="gpt2-small", batch_size=8, seq_len=1024, warmup=5, steps=30, probe_every=10, top_k=32)
SMALL = dict(preset="gpt2-1m", batch_size=4, seq_len=64, warmup=1, steps=4, probe_every=2, top_k=8)


def random_tokens(vocab: int, seq_len: int, n: int, seed: int = 0) -> Dataset:
    """An LM dataset of ``n`` windows of uniformly random token ids (throughput does not depend on content)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, seq_len), generator=g)
    return Dataset("random_tokens", {"train": Split({"input_ids": ids, "labels": ids.clone(),
                                                       "attention_mask": torch.ones_like(ids)})}, task="lm",
                   info={"vocab_size": vocab, "block_size": seq_len, "n": n})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device, override: float | None) -> tuple[float, str]:
    """(peak FLOP/s, where it came from): the override, the bf16 table by device name, or a measured matmul."""
    if override:
        return float(override), "--peak-flops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in PEAK_BF16.items():
            if key in name:
                return value, f"table (dense bf16, {key})"
        return measured_matmul(device, torch.bfloat16), f"measured bf16 matmul ({name} not in the table)"
    return measured_matmul(device, torch.float32), "measured fp32 matmul (no vendor peak on a CPU)"


def measured_matmul(device: torch.device, dtype: torch.dtype, n: int = 1024, reps: int = 5) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def timed(device: torch.device, fn) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def peak_memory_gib(device: torch.device) -> float:
    """This process's peak memory: the CUDA allocator's on a GPU, the resident set (max RSS) on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def check(small: bool = False, device: str = "auto", autocast: str | None = None, peak: float | None = None,
          compile: bool = False, strategy: str = "single", **overrides) -> dict:
    """Run the check and return its figures (see the module docstring); under ``fsdp`` every rank calls it."""
    cfg = {**(SMALL if small else FULL), **{k: v for k, v in overrides.items() if v is not None}}
    dev = devices.resolve_device(device)
    autocast = autocast or ("bf16" if dev.type == "cuda" else "none")
    from workbench import models

    model = models.build(cfg["preset"])
    vocab = model.config.vocab_size
    n_windows = cfg["batch_size"] * (cfg["warmup"] + 3 * cfg["steps"] + 2)
    run = Run(model, random_tokens(vocab, cfg["seq_len"], n_windows), device=device, autocast=autocast,
              batch_size=cfg["batch_size"], lr=3e-4, compile=compile, max_steps=10 ** 6, eval_every=0, log_every=10 ** 6,
              strategy=strategy)
    n_params = sum(p.numel() for p in run.model.parameters())
    tokens_per_step = cfg["batch_size"] * cfg["seq_len"]

    run.run(cfg["warmup"], progress=False)
    dev = run.torch_device  # under fsdp: this rank's cuda:LOCAL_RANK
    world = distributed.world_size() if strategy != "single" else 1
    train_s = timed(dev, lambda: run.run(cfg["steps"], progress=False))
    steps_per_sec = cfg["steps"] / train_s
    tokens_per_sec = steps_per_sec * tokens_per_step
    mc = run.model.config
    flops_token = 6 * n_params
    flops_token_attn = flops_token + 12 * mc.n_layer * mc.n_embd * cfg["seq_len"]
    peak_value, peak_source = peak_flops(dev, peak)

    # under fsdp each measurement runs on the gathered weights (the gather is timed with it)
    full_s = timed(dev, lambda: _gathered(run, lambda: model_spectra(run.model, alpha=False)))
    topk_s = timed(dev, lambda: _gathered(run, lambda: model_spectra(run.model, top_k=cfg["top_k"], alpha=False)))
    intruder_probe = SpectraProbe(every=cfg["probe_every"], spectra=False, intruders=True)
    intruder_s = timed(dev, lambda: _gathered(run, lambda: intruder_probe.measure(run)))
    state_s = timed(dev, lambda: (fsdp.model_state(run.model), fsdp.optimizer_state(run.model, run.torch_optimizer)))
    probe = run.add_probe(SpectraProbe(every=cfg["probe_every"]))
    probed_s = timed(dev, lambda: run.run(cfg["steps"], progress=False))
    run.remove_probe(probe)
    baseline_s = timed(dev, lambda: run.run(cfg["steps"], progress=False))
    intruders_total = run.history.latest("intruders_total")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    memory = [peak_memory_gib(dev)]
    if world > 1:
        memory = [None] * world
        torch.distributed.all_gather_object(memory, peak_memory_gib(dev))
    return {"device": str(dev), "device_name": name, "preset": cfg["preset"], "parameters": n_params,
            "strategy": strategy, "world_size": world, "state_gather_s": state_s, "peak_memory_gib_per_rank": memory,
            "autocast": autocast, "compile": compile, "batch_size": cfg["batch_size"], "seq_len": cfg["seq_len"], "steps": cfg["steps"],
            "steps_per_sec": steps_per_sec, "tokens_per_sec": tokens_per_sec, "flops_per_token": flops_token,
            "peak_flops": peak_value, "peak_source": peak_source,
            "mfu": flops_token * tokens_per_sec / (peak_value * world),
            "mfu_attention": flops_token_attn * tokens_per_sec / (peak_value * world),
            "spectra_full_s": full_s, "spectra_topk_s": topk_s, "top_k": cfg["top_k"], "intruder_probe_s": intruder_s,
            "probe_every": cfg["probe_every"], "probe_overhead": probed_s / baseline_s,
            "intruders_total": None if intruders_total is None else float(intruders_total),
            "loss_first": float(run.history.to_dataset().loss.values[0]), "loss_last": float(run.loss),
            "cuda_max_memory_gib": torch.cuda.max_memory_allocated(dev) / 2 ** 30 if dev.type == "cuda" else None}


def _gathered(run, fn):
    with fsdp.full_weights(run.model):
        return fn()


def report(r: dict) -> str:
    mfu_note = "" if r["device"].startswith("cuda") else "  (CPU: a fraction of this machine's measured matmul speed)"
    world = r.get("world_size", 1)
    where = f"{r['device_name']} [{r['device']}]" if r.get("strategy", "single") == "single" else \
        f"{r['strategy']} over {world} × {r['device_name']} (rank 0 {r['device']})"
    sharded = [] if r.get("strategy", "single") == "single" else [
        f"  peak memory  per rank {', '.join(f'{m:.2f}' for m in r['peak_memory_gib_per_rank'])} GiB; full state "
        f"gathered to rank 0 in {r['state_gather_s'] * 1e3:.0f} ms"]
    return "\n".join([
        f"gpu_check: {r['preset']} ({r['parameters'] / 1e6:.1f} M params) on {where}, "
        f"autocast {r['autocast']}, global batch {r['batch_size']} × seq {r['seq_len']}",
        f"  steps/s      {r['steps_per_sec']:.3f}",
        f"  tokens/s     {r['tokens_per_sec']:.0f}",
        f"  MFU          {100 * r['mfu']:.1f} %  (6N; with attention {100 * r['mfu_attention']:.1f} %; peak "
        f"{r['peak_flops'] / 1e12:.1f} TFLOP/s from {r['peak_source']}){mfu_note}",
        f"  spectra      full {r['spectra_full_s'] * 1e3:.0f} ms, top-{r['top_k']} {r['spectra_topk_s'] * 1e3:.0f} ms, "
        f"intruder probe {r['intruder_probe_s'] * 1e3:.0f} ms",
        f"  probe overhead  {r['probe_overhead']:.3f}× (SpectraProbe every {r['probe_every']} steps; intruders_total "
        f"{r['intruders_total']})",
        f"  loss         {r['loss_first']:.3f} → {r['loss_last']:.3f}"
        + (f"; peak memory {r['cuda_max_memory_gib']:.1f} GiB" if r["cuda_max_memory_gib"] is not None else ""),
        *sharded])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="CPU-sized check: gpt2-1m, a few steps")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--autocast", choices=["bf16", "fp16", "none"], help="default: bf16 on CUDA, none on CPU")
    p.add_argument("--peak-flops", type=float, help="the device's peak FLOP/s for MFU (overrides the table)")
    p.add_argument("--steps", type=int, help="timed steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--compile", action="store_true", help="train through torch.compile (compiled during warm-up)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 5; raise it with --compile)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--no-fsdp", dest="fsdp", action="store_false", help="skip the sharded (FSDP) check")
    p.add_argument("--fsdp-worker", action="store_true", help=argparse.SUPPRESS)  # a torchrun rank of the FSDP part
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    options = dict(small=args.small, device=args.device, autocast=args.autocast, peak=args.peak_flops,
                   compile=args.compile, warmup=args.warmup, steps=args.steps, batch_size=args.batch_size,
                   seq_len=args.seq_len)
    if args.fsdp_worker:
        result = check(strategy="fsdp", **options)
        if distributed.is_main():
            print(report(result), flush=True)
            Path(args.json).write_text(json.dumps(result, indent=2))
        distributed.shutdown()
        return 0
    result = check(**options)
    print(report(result), flush=True)
    if args.fsdp:
        result["fsdp"] = launch_fsdp(argv, devices.resolve_device(args.device))
    print("JSON " + json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def launch_fsdp(argv: list[str], device: torch.device) -> dict:
    """The FSDP check in one process per GPU (two gloo processes on a CPU), launched by torchrun; its figures."""
    import tempfile

    from torch.distributed.run import parse_args, run

    nproc = torch.cuda.device_count() if device.type == "cuda" else 2
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the one-device check's cached blocks: the workers want the memory
    keep = [a for a in argv if a not in ("--no-fsdp",)]
    skip = {"--json"}
    worker, drop = [], False
    for a in keep:  # this command's options without --json (the worker writes its own)
        if drop:
            drop = False
        elif a in skip:
            drop = True
        elif not a.startswith("--json="):
            worker.append(a)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fsdp.json"
        run(parse_args(["--standalone", "--nproc-per-node", str(nproc), str(Path(__file__).resolve()), *worker,
                        "--fsdp-worker", "--json", str(out)]))
        return json.loads(out.read_text())


if __name__ == "__main__":
    sys.exit(main())
