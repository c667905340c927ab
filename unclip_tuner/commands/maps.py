"""``unclip-tuner export-maps`` and ``unclip-tuner info``: look into a map cache, take maps out."""

from __future__ import annotations

import json
import sys
from typing import Dict, List

from ..cli import CLIError, progress


def register(sub) -> None:
    p = sub.add_parser(
        "export-maps", help="write a cache's maps as one .npz per image",
        description="Write the maps of a cache as one .npz per image (prob float32 HxW, "
                    "inverse_matrix, width, height, filename), the format 'cache-maps --maps' "
                    "imports. The files are byte-for-byte reproducible.")
    p.add_argument("--cache", required=True, help="map cache folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--images", help="comma-separated image names or stems (default: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_export)

    q = sub.add_parser(
        "info", help="describe a map cache (model, preprocessing, counts, studies)",
        description="Print what a map cache holds: the model, config and preprocessing that "
                    "made its maps, dtype, image and ground-truth counts, the studies kept "
                    "inside it and its size on disk; then check its files.")
    q.add_argument("--cache", required=True, help="map cache folder")
    q.add_argument("--verify", default="sample", choices=["sample", "full", "none"],
                   help="check the crc32 of a sample of maps (default), of every map, or none")
    q.add_argument("--json", action="store_true", help="print the summary as JSON")
    q.set_defaults(func=_cmd_info)


def _split_images(text: str) -> List[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise CLIError("--images needs at least one image name")
    return names


def _cmd_export(args) -> int:
    from ..cache.importers import export_maps
    from ..cache.store import MapCache

    images = _split_images(args.images) if args.images else None
    cache = MapCache.open(args.cache, verify="sample")
    show = not args.no_progress and sys.stderr.isatty()
    files = export_maps(cache, args.out, images=images, progress=progress(show, "export-maps"))
    print(f"wrote {len(files)} map file(s) to {args.out}")
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000.0
    return f"{n} B"  # pragma: no cover


def _value(v) -> str:
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 160 else text[:157] + "..."


def _names(items: List[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def format_info(info: Dict) -> str:
    """The human-readable form of :meth:`MapCache.info`."""
    lines = [f"cache        {info['path']}",
             f"written by   unclip-tuner {info['tool_version']} (schema {info['schema_version']}), "
             f"created {info['created']}" + (f", updated {info['updated']}" if info.get("updated")
                                             else ""),
             f"fingerprint  {info['fingerprint']}"]
    parts = info["fingerprint_parts"]
    if parts:
        lines.append("made from")
        for k, v in parts.items():
            lines.append(f"  {k:<11}{_value(v)}")
    shapes = ", ".join(f"{k} ({n})" for k, n in info["map_shapes"].items()) or "none"
    lines.append(f"dtype        {info['dtype']}")
    lines.append(f"images       {info['images']} map(s), network size {shapes}")
    if info.get("pending"):
        lines.append(f"             {info['pending']} of them from an unfinished run "
                     f"(run cache-maps again to finish it)")
    gt = info.get("gt")
    if gt is None:
        lines.append("ground truth none")
    else:
        lines.append(f"ground truth {gt['images']} image(s), {gt['words']} word(s), "
                     f"{gt['dont_care']} don't-care")
        if gt["images_without_map"]:
            lines.append(f"             {len(gt['images_without_map'])} GT image(s) without a map: "
                         f"{_names(gt['images_without_map'])}")
        if gt["maps_without_gt"]:
            lines.append(f"             {len(gt['maps_without_gt'])} map(s) without GT: "
                         f"{_names(gt['maps_without_gt'])}")
    lines.append(f"studies      {', '.join(info['studies']) if info['studies'] else 'none'}")
    lines.append(f"disk size    {_size(info['disk_bytes'])} (maps {_size(info['map_bytes'])})")
    meta = info.get("meta") or {}
    if meta:
        lines.append("meta")
        for k, v in meta.items():
            lines.append(f"  {k:<11}{_value(v)}")
    return "\n".join(lines)


def _cmd_info(args) -> int:
    from ..cache.store import CacheError, MapCache

    cache = MapCache.open(args.cache, verify="none")
    info = cache.info()
    status, rc = "not checked", 0
    if args.verify != "none":
        try:
            n = cache.verify(args.verify)
            status = f"ok (sizes of all maps, crc32 of {n})"
        except CacheError as exc:
            status, rc = f"FAILED: {exc}", 1
    info["verified"] = status
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        print(format_info(info))
        print(f"verified     {status}")
    return rc
