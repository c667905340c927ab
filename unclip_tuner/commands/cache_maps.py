"""``unclip-tuner cache-maps``: run the trained detector once and cache its probability maps.

Sources (exactly one):

``--ckpt`` / ``--state-dict``
    The baseline's Lightning checkpoint or a saved state_dict (needs torch and timm). The
    run's Hydra ``config.yaml`` (``--config``, or ``<run>/.hydra/config.yaml`` found beside
    ``<run>/checkpoints/``) gives the backbone, input size, normalisation and the current
    post-processing parameters; without it they are inferred or assumed, and said so.
``--onnx``
    An ONNX detector run with onnxruntime (``--profile`` picks its preprocessing).
``--maps``
    A folder of maps computed elsewhere (``.npz``, or the winning fork's pickled ``.npy``
    with ``--allow-pickle``), imported as they are.
"""

from __future__ import annotations

import os
import sys
from typing import List

from ..cli import CLIError

_PROFILES = ["seed", "seed-ppocr", "ppocr", "rapidocr"]
_TARGETS = ["auto", "seed-original", "seed-head", "karmakaryx"]


def register(sub) -> None:
    p = sub.add_parser(
        "cache-maps", help="run a detector once and cache its probability maps",
        description="Run a detector once over a folder of images and store every probability "
                    "map (with the matrix back to image pixels) in a verified, resumable cache.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", metavar="FILE", help="the baseline's Lightning checkpoint (.ckpt)")
    src.add_argument("--state-dict", metavar="FILE",
                     help="a saved state_dict of the same model (.pt, .pth, .safetensors)")
    src.add_argument("--onnx", metavar="FILE", help="an ONNX DB detector (run with onnxruntime)")
    src.add_argument("--maps", metavar="DIR",
                     help="import maps computed elsewhere (.npz per image) instead of running a model")
    p.add_argument("--config", metavar="FILE",
                   help="the run's Hydra config (outputs/<exp>/.hydra/config.yaml or the run folder)")
    p.add_argument("--target", default="auto", choices=_TARGETS,
                   help="code version of your post-processor (default: detected from the config's "
                        "postprocess keys)")
    p.add_argument("--profile", default="seed", choices=_PROFILES,
                   help="preprocessing (default seed: the competition baseline's)")
    p.add_argument("--input-size", type=int, metavar="N",
                   help="network input size (default: the config's, else the profile's)")
    p.add_argument("--images", metavar="DIR", help="folder of images")
    p.add_argument("--gt", metavar="PATH",
                   help="ground truth (UFO JSON, ICDAR/SROIE txt folder or zip); only its images "
                        "are processed and it is stored with the maps")
    p.add_argument("--out", required=True, metavar="DIR", help="cache folder (created or resumed)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="trust pickled objects in the checkpoint or in --maps files")
    p.add_argument("--sigmoid", action="store_true",
                   help="the ONNX model or the imported maps give logits: apply a sigmoid")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                   help="storage dtype of the maps (default float32)")
    p.add_argument("--device", default="auto", help="auto (default), cuda, cuda:N, mps or cpu")
    p.add_argument("--batch-size", type=int, default=4, help="images per network call (default 4)")
    p.add_argument("--tta", default="none", choices=["none", "hflip"],
                   help="hflip: average in the map of the mirrored image (default none)")
    p.add_argument("--workers", type=int, default=None,
                   help="threads reading and preprocessing images (default: CPU cores, at most 8)")
    p.add_argument("--strict", action="store_true",
                   help="a missing or unreadable image is an error instead of a warning")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a cache built from another model or settings")
    p.add_argument("--limit", type=int, metavar="N", help="process the first N images only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_cache_maps)


def _warn(text: str) -> None:
    print(f"unclip-tuner cache-maps: warning: {text}", file=sys.stderr)


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def _listing(pairs, limit: int = 10) -> str:
    shown = "; ".join(pairs[:limit])
    return shown + (f"; and {len(pairs) - limit} more" if len(pairs) > limit else "")


def _progress_bar(show: bool, total: int):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="cache-maps", unit="img", file=sys.stderr, dynamic_ncols=True)


def _cmd_cache_maps(args) -> int:
    if args.batch_size < 1:
        raise CLIError("--batch-size must be >= 1")
    if args.workers is None:
        args.workers = max(1, min(8, os.cpu_count() or 1))
    if args.workers < 1:
        raise CLIError("--workers must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise CLIError("--limit must be >= 1")
    if args.input_size is not None and args.input_size < 32:
        raise CLIError("--input-size must be >= 32")
    show = not args.no_progress and sys.stderr.isatty()
    gt = None
    if args.gt:
        from ..io import read_dataset

        gt = read_dataset(args.gt)
    if args.maps:
        return _import(args, gt, show)
    if not args.images:
        raise CLIError("--images DIR is required (the folder of images to run the model on)")
    if args.sigmoid and not args.onnx:
        raise CLIError("--sigmoid applies to --onnx outputs or --maps files only")
    return _run(args, gt, show)


def _import(args, gt, show: bool) -> int:
    for flag, value in (("--images", args.images), ("--config", args.config),
                        ("--input-size", args.input_size), ("--limit", args.limit)):
        if value is not None:
            raise CLIError(f"{flag} does not apply to --maps (the maps are imported as they are)")
    if args.tta != "none":
        raise CLIError("--tta does not apply to --maps")
    from ..cache.importers import import_maps
    from ..cli import progress

    cache = import_maps(args.maps, args.out, gt=gt, allow_pickle=args.allow_pickle,
                        sigmoid=args.sigmoid, dtype=args.dtype, overwrite=args.overwrite,
                        progress=progress(show, "import"))
    print(f"cache-maps: {len(cache)} map(s) imported from {args.maps} -> {args.out}")
    return 0


def _seed_size_check(profile: str, size: int) -> None:
    if profile.startswith("seed") and size % 32:
        raise CLIError(f"input size {size} is not a multiple of 32; the baseline's networks "
                       f"need one (960, 1024 and 1280 presets exist)")


def _run(args, gt, show: bool) -> int:
    from ..cache.store import MapCache
    from ..models.inference import plan_images, run_cache_maps
    from ..models.preprocess import PROFILES

    notes: List[str] = []
    plan = plan_images(args.images, gt, args.limit)
    if plan.gt_without_image:
        text = (f"{len(plan.gt_without_image)} GT image(s) have no image file in {args.images} "
                f"and are left out: {_listing(plan.gt_without_image)}")
        if args.strict:
            raise CLIError(text)
        _warn(text)
    if plan.images_without_gt:
        notes.append(f"{len(plan.images_without_gt)} image(s) in {args.images} have no GT entry "
                     f"and are not processed")
    if not plan.items:
        raise CLIError(f"no image to process: none of the GT images is in {args.images}")

    target = None if args.target == "auto" else args.target
    profile = args.profile
    if args.onnx:
        detector, run_cfg, model_desc, sha, spec_dict = _onnx_source(args, target, notes)
    else:
        detector, run_cfg, model_desc, sha, spec_dict = _torch_source(args, target, notes)
    size = detector.input_size
    norm = detector.normalisation or PROFILES[profile][2]
    preprocessing = {"profile": profile, "input_size": size,
                     "normalisation": {"mean": list(norm.mean), "std": list(norm.std),
                                       "max_pixel": norm.max_pixel,
                                       "channel_order": norm.channel_order,
                                       "formula": norm.formula}}
    tta = None if args.tta == "none" else args.tta
    parts = {"model_sha256": sha,
             "config": {**spec_dict, "tta": tta},
             "preprocessing": preprocessing,
             "dtype": args.dtype}
    model_desc = {**model_desc, **detector.describe(), "assumed": model_desc.get("assumed", [])}
    meta = {"params": run_cfg.params if run_cfg is not None else None,
            "target": run_cfg.target if run_cfg is not None else None,
            "model": model_desc,
            "preprocessing": preprocessing,
            "images": str(args.images)}
    writer = MapCache.create(args.out, parts, meta=meta, dtype=args.dtype, gt=plan.gt,
                             overwrite=args.overwrite)
    bar = _progress_bar(show, len(plan.items))
    try:
        with writer:
            if bar is not None and writer.resumed:
                bar.update(sum(1 for it in plan.items if writer.has(it.name)))
            stats = run_cache_maps(detector, plan.items, writer, batch_size=args.batch_size,
                                   workers=args.workers, strict=args.strict,
                                   progress=bar.update if bar is not None else None)
            writer.meta["skipped"] = [{"image": n, "reason": r} for n, r in stats.skipped]
    finally:
        if bar is not None:
            bar.close()
    for n in notes + model_desc.get("assumed", []):
        _note(n)
    if stats.skipped:
        _warn(f"{len(stats.skipped)} image(s) could not be read and were skipped: "
              f"{_listing([f'{n} ({r})' for n, r in stats.skipped])}")
    rate = f", {stats.images_per_second:.2f} img/s" if stats.cached else ""
    print(f"cache-maps: {stats.total} image(s) -> {args.out}: {stats.cached} cached now, "
          f"{stats.already} already cached, {len(stats.skipped)} skipped "
          f"({stats.seconds:.1f} s{rate}; device {detector.describe()['device']})")
    if run_cfg is not None and run_cfg.params is not None:
        print(f"current post-processing ({run_cfg.target}): "
              + ", ".join(f"{k}={v}" for k, v in run_cfg.params.items()))
    return 0


def _size_and_norm(args, run_cfg, notes: List[str], assume_note: str):
    """Input size and normalisation: --input-size > config > profile default."""
    from ..models.preprocess import default_input_size

    profile = args.profile
    size = args.input_size
    if run_cfg is not None and run_cfg.input_size is not None:
        if size is not None and size != run_cfg.input_size:
            notes.append(f"--input-size {size} overrides the config's {run_cfg.input_size}")
        size = size or run_cfg.input_size
    if size is None:
        size = default_input_size(profile)
        if assume_note:
            notes.append(assume_note.format(size=size))
    _seed_size_check(profile, size)
    norm = None
    if run_cfg is not None and run_cfg.normalisation is not None:
        if profile == "seed":
            norm = run_cfg.normalisation
        else:
            notes.append(f"profile {profile} uses its own normalisation, not the config's Normalize")
    return size, norm


def _torch_source(args, target, notes: List[str]):
    try:
        import timm  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        raise CLIError("running a checkpoint needs torch and timm: pip install "
                       "'unclip-tuner[torch]' (or use --onnx / --maps)") from None
    from ..models.checkpoint import load_model
    from ..models.inference import TorchDetector

    path = args.ckpt or args.state_dict
    loaded = load_model(path, config=args.config, target=target, allow_pickle=args.allow_pickle)
    size, norm = _size_and_norm(
        args, loaded.run, notes,
        "input size {size} assumed (the checkpoint does not store it): pass --input-size or "
        "--config if the model was trained at another size")
    detector = TorchDetector(loaded.model, args.profile, size, norm, args.device,
                             None if args.tta == "none" else args.tta)
    spec = loaded.spec
    notes.append(f"model: {spec.encoder} (select_features {spec.select_features}, "
                 f"{loaded.description['structure']}), input {size}, code version "
                 f"{loaded.run.target}")
    return detector, loaded.run, loaded.description, loaded.sha256, {"kind": "torch",
                                                                      "spec": spec.as_dict()}


def _onnx_source(args, target, notes: List[str]):
    from ..models.checkpoint import file_sha256, read_run_config
    from ..models.inference import OnnxRunner
    from ..models.onnx_detector import OnnxDetector

    run_cfg = read_run_config(args.config, target) if args.config else None
    size, norm = _size_and_norm(args, run_cfg, notes, "")
    if args.device not in ("auto", "cpu"):
        raise CLIError("--onnx runs on the CPU with onnxruntime; use --device cpu or auto")
    try:
        onnx = OnnxDetector(args.onnx, profile=args.profile, input_size=size, normalisation=norm)
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    runner = OnnxRunner(onnx, None if args.tta == "none" else args.tta, args.sigmoid)
    sha = file_sha256(args.onnx)
    desc = {"kind": "onnx", "onnx": str(onnx.path.resolve()), "onnx_sha256": sha,
            "config": run_cfg.path if run_cfg is not None else None,
            "assumed": list(run_cfg.notes) if run_cfg is not None else []}
    return runner, run_cfg, desc, sha, {"kind": "onnx", "sigmoid": bool(args.sigmoid)}
