"""Seeded predictions on real ground truth (SROIE receipts, ICDAR 2015), for CLEval parity.

The ground truth itself stays in ``../shared/data`` (third-party data never enters the
repository); this script writes only our own simulated detections of it::

    python tests/data/cleval/make_real_predictions.py [CASES_DIR]

* ``tests/data/cleval/real_predictions_sroie.json`` and ``..._icdar15.json``: UFO JSON
  predictions (DB-like: matches, splits, merges, misses, shifted/loose boxes, false
  positives; round-cornered polygons for SROIE, a mix of quads and polygons for ICDAR).
* With ``CASES_DIR``: the same images as baseline-harness case files
  (``real_cases_sroie.json`` ...), GT included, to produce the reference scores
  ``real_reference_*.json`` in the pinned environment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from make_cases import simulate_detections  # noqa: E402

SETS = {
    # name: (GT folder, number of images, seed, quad share)
    "sroie": ("sroie_dev/gt", 30, 7, 0.0),
    "icdar15": ("icdar2015_test/gt", 150, 11, 0.5),
}


def main() -> None:
    from unclip_tuner.io import read_dataset

    cases_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    for name, (folder, count, seed, quad_share) in SETS.items():
        gt = read_dataset(SHARED / folder)
        rng = np.random.default_rng(seed)
        keys = sorted(gt)
        chosen = sorted(rng.choice(len(keys), size=min(count, len(keys)), replace=False))
        preds = {"images": {}}
        cases = []
        for i in chosen:
            key = keys[i]
            words = gt[key]
            polys = [np.asarray(p, dtype=np.float64) for p in words.polygons]
            det = simulate_detections(polys, rng, quads=bool(rng.random() < quad_share),
                                      fp_rate=0.08)
            preds["images"][key] = {"words": {f"{k + 1:04d}": {"points": p}
                                              for k, p in enumerate(det)}}
            cases.append({"name": key, "gt": [p.tolist() for p in polys],
                          "dont_care": (words.dont_care.tolist()
                                        if words.dont_care is not None else None),
                          "det": det})
        out = HERE / f"real_predictions_{name}.json"
        with open(out, "w") as f:
            json.dump(preds, f, separators=(",", ":"))
        print(f"{out}: {len(chosen)} images, {out.stat().st_size / 1e6:.2f} MB")
        if cases_dir is not None:
            with open(cases_dir / f"real_cases_{name}.json", "w") as f:
                json.dump({"images": cases}, f)


if __name__ == "__main__":
    main()
