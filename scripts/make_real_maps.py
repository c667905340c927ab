#!/usr/bin/env python
"""Write real probability maps of a folder of images with an ONNX DB detector.

One ``.npz`` per image, named after the image's stem, holding

- ``prob``: float32 ``(h, w)`` probability map in network space (1024 x 1024 with the default
  ``seed-ppocr`` profile),
- ``inverse_matrix``: float64 ``(3, 3)`` map from network pixels to original image pixels,
- ``width``, ``height``: the original image size after EXIF orientation,
- ``filename``: the image's file name.

This is the map import format of ``cache-maps --maps``. With ``--gt`` the ground truth
(``x1,y1,...,x4,y4,transcription`` text files, ICDAR 2015 and SROIE style, files named
``<stem>.txt`` or ``gt_<stem>.txt``) is also written to ``gt.json`` in the UFO format, words
carrying their ``transcription`` (``###`` marks don't-care regions), and only images with a
ground-truth file are processed. ``manifest.json`` records the model, profile and timings.

Default model: the PP-OCRv4 mobile detector of the ``rapidocr-onnxruntime`` wheel
(``pip install --no-deps rapidocr-onnxruntime==1.4.4``).

Example::

    python scripts/make_real_maps.py --images DATA/sroie_dev/images --gt DATA/sroie_dev/gt \\
        --out /tmp/maps/sroie_dev
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unclip_tuner.models.onnx_detector import OnnxDetector, find_ppocr_v4_model  # noqa: E402
from unclip_tuner.models.preprocess import PROFILES, load_image  # noqa: E402

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def natural_key(name: str):
    """Sort key that orders ``img_2`` before ``img_10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> List[Path]:
    """Image files of a folder, in natural order of their names."""
    if not folder.is_dir():
        raise SystemExit(f"error: image folder not found: {folder}")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: natural_key(p.name))


def read_quad_gt(path: Path) -> Dict[str, dict]:
    """Read an ``x1,y1,...,x4,y4,transcription`` file into UFO words.

    The transcription may contain commas (only the first 8 commas split); a UTF-8 BOM and CRLF
    line ends are accepted; blank lines are skipped.
    """
    words: Dict[str, dict] = {}
    text = path.read_text(encoding="utf-8-sig", errors="strict")
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",", 8)
        if len(parts) < 8:
            raise SystemExit(f"error: {path}:{lineno}: expected 8 coordinates, got {line!r}")
        try:
            coords = [float(v) for v in parts[:8]]
        except ValueError:
            raise SystemExit(f"error: {path}:{lineno}: non-numeric coordinate in {line!r}") from None
        points = [[int(v) if float(v).is_integer() else v for v in coords[i:i + 2]] for i in range(0, 8, 2)]
        words[f"{len(words) + 1:04d}"] = {
            "points": points,
            "transcription": parts[8] if len(parts) > 8 else "",
        }
    return words


def find_gt(gt_dir: Path, image: Path) -> Optional[Path]:
    for name in (f"{image.stem}.txt", f"gt_{image.stem}.txt"):
        if (gt_dir / name).is_file():
            return gt_dir / name
    return None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True, help="folder of images")
    ap.add_argument("--gt", type=Path, help="folder of x1,y1,...,x4,y4,text ground-truth files")
    ap.add_argument("--out", type=Path, required=True, help="output folder (created)")
    ap.add_argument("--limit", type=int, help="only the first N images (natural name order)")
    ap.add_argument("--model", type=Path, help="ONNX detector (default: PP-OCRv4 from rapidocr_onnxruntime)")
    ap.add_argument("--profile", default="seed-ppocr", choices=sorted(PROFILES),
                    help="preprocessing profile (default: seed-ppocr)")
    ap.add_argument("--input-size", type=int, help="profile size (default: the profile's, 1024 for seed*)")
    ap.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: all cores)")
    ap.add_argument("--no-compress", action="store_true", help="write uncompressed .npz files")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit <= 0:
        ap.error("--limit must be positive")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        model = args.model if args.model is not None else find_ppocr_v4_model()
        detector = OnnxDetector(model, profile=args.profile, input_size=args.input_size,
                                intra_op_num_threads=args.threads)
    except (FileNotFoundError, ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    images = list_images(args.images)
    gt_json: Dict[str, dict] = {}
    if args.gt is not None:
        if not args.gt.is_dir():
            print(f"error: ground-truth folder not found: {args.gt}", file=sys.stderr)
            return 2
        with_gt = []
        for image in images:
            gt_file = find_gt(args.gt, image)
            if gt_file is None:
                print(f"warning: no ground truth for {image.name}; skipped", file=sys.stderr)
                continue
            with_gt.append((image, gt_file))
        images = [image for image, _ in with_gt]
        gt_files = dict((image.name, gt_file) for image, gt_file in with_gt)
    if args.limit is not None:
        images = images[: args.limit]
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        print("error: several images share a file stem; their .npz names would collide", file=sys.stderr)
        return 2
    if not images:
        print(f"error: no images in {args.images}", file=sys.stderr)
        return 2

    args.out.mkdir(parents=True, exist_ok=True)
    save = np.savez if args.no_compress else np.savez_compressed
    t_load = t_pre = t_net = t_save = 0.0
    start = time.perf_counter()
    for i, image in enumerate(images, 1):
        t0 = time.perf_counter()
        try:
            rgb = load_image(image)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        t1 = time.perf_counter()
        net_input, inverse, (width, height) = detector.preprocess(rgb)
        t2 = time.perf_counter()
        prob = detector.run(net_input)
        t3 = time.perf_counter()
        save(args.out / f"{image.stem}.npz", prob=prob, inverse_matrix=inverse.astype(np.float64),
             width=np.int64(width), height=np.int64(height), filename=np.str_(image.name))
        t4 = time.perf_counter()
        t_load += t1 - t0
        t_pre += t2 - t1
        t_net += t3 - t2
        t_save += t4 - t3
        if args.gt is not None:
            gt_json[image.name] = {"words": read_quad_gt(gt_files[image.name])}
        if i % 25 == 0 or i == len(images):
            elapsed = time.perf_counter() - start
            print(f"{i}/{len(images)} images, {i / elapsed:.2f} images/s", file=sys.stderr)
    total = time.perf_counter() - start

    if args.gt is not None:
        with open(args.out / "gt.json", "w", encoding="utf-8") as f:
            json.dump({"images": gt_json}, f, ensure_ascii=False)
    import cv2
    import onnxruntime
    import PIL

    n = len(images)
    manifest = {
        "images": n,
        "model": str(model),
        "model_sha256": sha256(Path(model)),
        "profile": args.profile,
        "input_size": detector.input_size,
        "seconds": {"total": total, "load": t_load, "preprocess": t_pre, "network": t_net, "save": t_save},
        "images_per_second": n / total,
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "opencv": cv2.__version__, "pillow": PIL.__version__,
                     "onnxruntime": onnxruntime.__version__},
    }
    with open(args.out / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    print(f"{n} maps in {total:.1f} s: {n / total:.2f} images/s "
          f"(load {t_load / n * 1e3:.0f} ms, preprocess {t_pre / n * 1e3:.0f} ms, "
          f"network {t_net / n * 1e3:.0f} ms, save {t_save / n * 1e3:.0f} ms per image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
