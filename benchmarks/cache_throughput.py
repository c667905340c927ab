"""Throughput of ``cache-maps``: the bare network forward against the whole pipeline.

Two figures on the same device and settings:

* bare forward: ``model(x)`` on a batch already on the device, synchronised, no data loading,
  no copies back;
* full ``cache-maps``: read and decode the images, preprocess, run the network, copy the maps
  back and write them to a fresh cache (fsync included).

The ratio (full / bare) says how much of the network's speed the pipeline keeps; a ratio well
below 1 means image decoding, copies or cache writes are the bottleneck (raise ``--workers``).

Examples
--------
Random weights, synthetic receipt-sized pages::

    python benchmarks/cache_throughput.py --encoder resnet18 --input-size 640 --images-count 16

A real checkpoint and validation images, on a GPU::

    python benchmarks/cache_throughput.py --ckpt best.ckpt --config .hydra/config.yaml \\
        --images data/images/val --device cuda --batch-size 8 --workers 8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Decoder input channels of the baseline's presets (models/decoder/*.yaml).
PRESETS = {
    "resnet18": ([1, 2, 3, 4], [64, 128, 256, 512]),
    "resnet50": ([1, 2, 3, 4], [256, 512, 1024, 2048]),
    "hrnet_w44": ([1, 2, 3, 4], [128, 256, 512, 1024]),
    "efficientnet_b3": ([1, 2, 3, 4], [32, 48, 136, 384]),
    "convnext_tiny": ([0, 1, 2, 3], [96, 192, 384, 768]),
}


def synthetic_pages(folder: Path, n: int, seed: int = 0) -> None:
    """Receipt-like JPEG pages (about 960 x 1200, dark text lines on paper)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = int(rng.integers(1100, 1400)), int(rng.integers(800, 1100))
        page = np.full((h, w, 3), 235, np.uint8) + rng.integers(0, 12, (h, w, 3), dtype=np.uint8)
        for y in range(40, h - 40, 28):
            x = 40
            while x < w - 120:
                length = int(rng.integers(30, 160))
                page[y:y + 14, x:x + length] = rng.integers(10, 70)
                x += length + int(rng.integers(10, 40))
        Image.fromarray(page).save(folder / f"page_{i:04d}.jpg", quality=90)


def random_checkpoint(encoder: str, path: Path) -> None:
    """A checkpoint of the preset with random weights, saved as the baseline saves it."""
    import torch

    from unclip_tuner.models.checkpoint import DBNetSpec
    from unclip_tuner.models.dbnet import DBNet

    select, channels = PRESETS[encoder]
    model = DBNet(DBNetSpec(encoder, select, channels))
    torch.save({"state_dict": {"model." + k: v for k, v in model.state_dict().items()}}, path)


def bare_forward(detector, batch_size: int, size: int, iters: int, warmup: int) -> float:
    """Images per second of ``model(x)`` alone."""
    import torch

    model, device = detector.model, detector.device
    x = torch.randn(batch_size, 3, size, size, device=device)
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iters):
            model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return batch_size * iters / seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", help="checkpoint (default: random weights of --encoder)")
    p.add_argument("--config", help="the run's Hydra config.yaml")
    p.add_argument("--encoder", default="resnet18", choices=sorted(PRESETS))
    p.add_argument("--images", help="folder of images (default: synthetic pages)")
    p.add_argument("--images-count", type=int, default=16, help="synthetic pages (default 16)")
    p.add_argument("--input-size", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--tta", default="none", choices=["none", "hflip"])
    p.add_argument("--iters", type=int, default=5, help="timed bare-forward batches (default 5)")
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from unclip_tuner.cache.store import MapCache
    from unclip_tuner.models.checkpoint import load_model
    from unclip_tuner.models.inference import TorchDetector, plan_images, run_cache_maps

    with tempfile.TemporaryDirectory(prefix="cache_throughput_") as tmp:
        tmp = Path(tmp)
        ckpt = Path(args.ckpt) if args.ckpt else tmp / "random.ckpt"
        if not args.ckpt:
            random_checkpoint(args.encoder, ckpt)
        images = Path(args.images) if args.images else tmp / "images"
        if not args.images:
            synthetic_pages(images, args.images_count)
        loaded = load_model(ckpt, config=args.config)
        size = args.input_size
        tta = None if args.tta == "none" else args.tta
        detector = TorchDetector(loaded.model, "seed", size, loaded.run.normalisation,
                                 args.device, tta)
        print(f"model {loaded.spec.encoder}, input {size}, batch {args.batch_size}, "
              f"workers {args.workers}, device {detector.device}, tta {args.tta}, "
              f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
              f"cpus {os.cpu_count()}")
        if detector.device.startswith("cuda"):
            print(f"gpu {torch.cuda.get_device_name(detector.device)}")
        bare = bare_forward(detector, args.batch_size * (2 if tta else 1), size, args.iters,
                            args.warmup)
        if tta:
            bare /= 2  # two forwards per image
        plan = plan_images(images)
        # Warm the pipeline on one image (first-call costs), then time a fresh cache.
        with MapCache.create(tmp / "warm", {"warm": True}, dtype=args.dtype) as w:
            run_cache_maps(detector, plan.items[:1], w, 1, 1)
        with MapCache.create(tmp / "cache", {"bench": True}, dtype=args.dtype) as writer:
            stats = run_cache_maps(detector, plan.items, writer, args.batch_size, args.workers)
        full = stats.images_per_second
        print(f"bare forward      : {bare:8.2f} img/s")
        print(f"full cache-maps   : {full:8.2f} img/s  ({stats.cached} images, "
              f"{stats.seconds:.2f} s, network {stats.network_seconds:.2f} s)")
        print(f"ratio full / bare : {full / bare:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
