"""Training throughput (episodes/s): the fast path against a plain fp32 eager loop, same run.

    python benchmarks/train_throughput.py --device cuda --seconds 8 --json
    python benchmarks/train_throughput.py --device cuda --tta-data gpu_data/omniglot --tta-seconds 45

Fast: E episodes per optimizer step in one forward, channels_last, bf16 autocast (fp32 also shown).
Plain: one episode per step, fp32, contiguous. With ``--tta-data`` also the wall time until
validation 5-way 1-shot (held-out background alphabets) first reaches ``--target``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np
import torch

from edgemeta.runtime.preprocess import PreprocessSpec
from edgemeta.train.backbones import build_backbone
from edgemeta.train.loop import InputPipe, TrainConfig, train
from edgemeta.train.loss import episode_logits, prototypical_loss
from edgemeta.train.sampler import TrainingEpisodeSampler


def measure(device: str, way: int, shot: int, query: int, e: int, bf16: bool, cl: bool, seconds: float) -> float:
    """Episodes/s of full training steps on random 28x28 data (1000 classes x 20)."""
    dev = torch.device(device)
    images = np.random.default_rng(0).integers(0, 256, size=(20000, 28, 28, 1), dtype=np.uint8)
    sampler = TrainingEpisodeSampler(images, np.repeat(np.arange(1000), 20), way, shot, query, e, dev)
    pipe = InputPipe(PreprocessSpec(), dev, "none", channels_last=cl)
    model = build_backbone("conv4", 1).to(dev)
    model = model.to(memory_format=torch.channels_last) if cl else model
    opt = torch.optim.Adam(model.parameters(), 1e-3, **({"fused": True} if dev.type == "cuda" else {}))

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            emb = model(pipe(sampler.sample(), train=True)).view(e, way, shot + query, -1)
            loss, _ = prototypical_loss(*episode_logits(emb, shot))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(3):
        step()
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(5):
            step()
        n += 5
        sync()
    return n * e / (time.perf_counter() - t0)


def time_to_accuracy(data: str, device: str, fast: bool, seconds: float, target: float) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            data=data,
            out=out,
            split="background",
            way=60,
            shot=[1, 5] if fast else [5],
            query=5,
            episodes=10**7,
            lr_step=20000,
            episodes_per_step=8 if fast else 1,
            device=device,
            precision="bf16" if fast else "fp32",
            channels_last=fast,
            augment="none",
            val_every=1000,
            val_episodes=400,
            time_limit=seconds,
            target=target,
        )
        s = train(cfg, progress=False)
    return {
        "seconds_to_target": (s["time_to_target"] or {}).get("seconds"),
        "best_val": s["best_val"],
        "episodes": s["episodes"],
        "budget_s": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--seconds", type=float, default=8.0, help="per configuration")
    ap.add_argument("--episodes-per-step", type=int, default=0, help="0: 8 on CUDA, 1 on CPU")
    ap.add_argument("--tta-data", default=None, help="Omniglot source for time-to-accuracy (GPU)")
    ap.add_argument("--tta-seconds", type=float, default=45.0)
    ap.add_argument("--target", type=float, default=0.98)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    cuda = a.device == "cuda"
    e = a.episodes_per_step or (8 if cuda else 1)
    results = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__, "configs": []}
    for way in (60, 20):
        plain = measure(a.device, way, 5, 5, 1, False, False, a.seconds)
        fast_bf16 = measure(a.device, way, 5, 5, e, True, True, a.seconds)
        fast_fp32 = measure(a.device, way, 5, 5, e, False, True, a.seconds)
        fast_2e = measure(a.device, way, 5, 5, 2 * e, True, True, a.seconds)
        row = {
            "way": way,
            "shot": 5,
            "query": 5,
            "episodes_per_step": e,
            "plain_fp32_eager": plain,
            "fast_bf16": fast_bf16,
            "fast_fp32": fast_fp32,
            f"fast_bf16_e{2 * e}": fast_2e,
            "ratio_best": max(fast_bf16, fast_fp32) / plain,
            "ratio_2e": fast_2e / plain,
        }
        results["configs"].append(row)
        print(
            f"{way}-way 5-shot 5-query: plain {plain:.1f} ep/s, fast bf16 {fast_bf16:.1f}, fast fp32 {fast_fp32:.1f}"
            f" (E={e}), ratio {row['ratio_best']:.2f}x; bf16 E={2 * e}: {fast_2e:.1f} ({row['ratio_2e']:.2f}x)",
            file=sys.stderr,
        )
    if a.tta_data:
        results["time_to_accuracy"] = {
            "fast": time_to_accuracy(a.tta_data, a.device, True, a.tta_seconds, a.target),
            "plain": time_to_accuracy(a.tta_data, a.device, False, a.tta_seconds, a.target),
        }
        print(json.dumps(results["time_to_accuracy"]), file=sys.stderr)
    if a.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
