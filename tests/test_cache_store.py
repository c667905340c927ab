"""The on-disk map cache: round trips, resume after crashes, fingerprints, verification."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from unclip_tuner.cache import (CacheError, CacheWarning, InMemoryMapStore, MapCache, MapRecord,
                                letterbox_inverse_matrix)
from unclip_tuner.cache.store import INDEX, MANIFEST, MAPS_DIR, PENDING, fingerprint_of
from unclip_tuner.io import Dataset, ImageWords

REPO = Path(__file__).resolve().parents[1]
PARTS = {"model": "sha256:" + "ab" * 32, "config": {"input_size": 64, "arch": "resnet18"},
         "preprocessing": {"profile": "seed", "input_size": 64}}


def make_record(i: int, shape=(64, 64), name: str = None) -> MapRecord:
    """A deterministic synthetic record (values in [0, 1], exact 0 and 1 included)."""
    rng = np.random.default_rng(1000 + i)
    prob = rng.random(shape, dtype=np.float32)
    prob[0, 0], prob[-1, -1] = 0.0, 1.0
    w, h = 100 + 7 * i, 80 + 3 * i
    return MapRecord(name or f"img_{i:03d}.jpg", prob,
                     letterbox_inverse_matrix(w, h, shape[0], shape[1]), w, h)


def write_cache(path, n=5, **kw) -> list:
    recs = [make_record(i) for i in range(n)]
    with MapCache.create(path, PARTS, **kw) as w:
        for r in recs:
            w.add(r)
    return recs


def assert_same(rec: MapRecord, ref: MapRecord) -> None:
    assert rec.name == ref.name
    assert rec.prob.dtype == np.float32
    assert np.array_equal(rec.prob.view(np.uint32), ref.prob.astype(np.float32).view(np.uint32))
    assert np.array_equal(rec.inverse_matrix, ref.inverse_matrix)
    assert (rec.width, rec.height) == (ref.width, ref.height)


# ------------------------------------------------------------------------------ round trips
def test_roundtrip_float32_bit_exact(tmp_path):
    recs = [make_record(i) for i in range(4)] + [make_record(9, shape=(48, 64), name="a/b c.png")]
    meta = {"params": {"thresh": 0.3, "box_thresh": 0.4}, "target": "juny79", "model": "resnet18"}
    with MapCache.create(tmp_path / "c", PARTS, meta=meta) as w:
        for r in recs:
            w.add(r)
        assert w.has("a/b c.png") and not w.has("nope.jpg")
    for mmap in (False, True):
        cache = MapCache.open(tmp_path / "c", verify="full", mmap=mmap)
        assert cache.names() == [r.name for r in recs]
        assert len(cache) == 5 and "img_002.jpg" in cache
        for r in recs:
            assert_same(cache.get(r.name, verify=True), r)
    assert cache.meta == meta
    assert cache.gt is None
    assert cache.dtype == "float32"
    assert cache.fingerprint == fingerprint_of(PARTS, "float32")
    assert cache.fingerprint_parts == PARTS
    info = cache.info()
    assert info["images"] == 5 and info["map_shapes"] == {"64x64": 4, "48x64": 1}
    assert info["disk_bytes"] >= info["map_bytes"] > 5 * 48 * 64 * 4
    # Iterating the store streams the same records.
    assert [r.name for r in cache] == cache.names()
    with pytest.raises(KeyError, match="nope"):
        cache.get("nope.jpg")


def test_roundtrip_float16(tmp_path):
    recs = write_cache(tmp_path / "c", n=3, dtype="float16")
    cache = MapCache.open(tmp_path / "c", verify="full")
    assert cache.dtype == "float16"
    for r in recs:
        got = cache.get(r.name)
        assert got.prob.dtype == np.float32
        # float16 keeps 11 significant bits: for values in [0, 1] the error is at most 2**-12.
        assert np.array_equal(got.prob, r.prob.astype(np.float16).astype(np.float32))
        assert np.abs(got.prob - r.prob).max() <= 2.0 ** -12
        assert np.array_equal(got.inverse_matrix, r.inverse_matrix)
    assert np.load(cache.map_file(recs[0].name)).dtype == np.float16
    assert fingerprint_of(PARTS, "float16") != fingerprint_of(PARTS, "float32")


def test_gt_kept_with_dont_care_flags(tmp_path):
    gt = Dataset()
    gt["img_000.jpg"] = ImageWords([[[0, 0], [10, 0], [10, 5], [0, 5]],
                                    [[1.5, 1], [2, 2.25], [3, 1]], [[-4, -4], [-4, -4]]],
                                   [False, True, False], ["abc", "###", ""])
    gt["img_001.jpg"] = ImageWords([[[5, 5], [9, 5], [9, 9], [5, 9]]])
    gt["no_map.jpg"] = ImageWords()
    write_cache(tmp_path / "c", n=3, gt=gt)
    cache = MapCache.open(tmp_path / "c")
    got = cache.gt
    assert list(got) == list(gt)
    for name, words in gt.items():
        g = got[name]
        assert len(g) == len(words)
        for a, b in zip(g.polygons, words.polygons):
            assert np.array_equal(a, b)
        assert np.array_equal(g.dont_care_flags, words.dont_care_flags)
        assert (g.texts or None) == (words.texts or None)
    info = cache.info()["gt"]
    assert info["images"] == 3 and info["words"] == 4 and info["dont_care"] == 1
    assert info["images_without_map"] == ["no_map.jpg"]
    assert info["maps_without_gt"] == ["img_002.jpg"]


def test_in_memory_store_and_cache_agree(tmp_path):
    recs = write_cache(tmp_path / "c", n=3)
    mem = InMemoryMapStore(recs)
    cache = MapCache.open(tmp_path / "c")
    assert mem.names() == cache.names()
    for a, b in zip(mem, cache):
        assert_same(b, a)


# ------------------------------------------------------------------------------ writer rules
def test_writer_refuses_bad_maps(tmp_path):
    with MapCache.create(tmp_path / "c", PARTS) as w:
        good = make_record(0)
        nan = good.prob.copy()
        nan[3, 3] = np.nan
        with pytest.raises(CacheError, match="NaN"):
            w.add(MapRecord("a.jpg", nan, good.inverse_matrix, 10, 10))
        with pytest.raises(CacheError, match=r"outside \[0, 1\].*sigmoid"):
            w.add(MapRecord("a.jpg", good.prob * 3 - 1, good.inverse_matrix, 10, 10))
        with pytest.raises(CacheError, match="floating point"):
            w.add(MapRecord("a.jpg", (good.prob * 255).astype(np.uint8), good.inverse_matrix, 10, 10))
        bad_m = good.inverse_matrix.copy()
        bad_m[2, 0] = 0.1
        with pytest.raises(CacheError, match="not affine"):
            w.add(MapRecord("a.jpg", good.prob, bad_m, 10, 10))
        with pytest.raises(CacheError, match="positive"):
            w.add(MapRecord("a.jpg", good.prob, good.inverse_matrix, 0, 10))
        assert len(w) == 0
    assert MapCache.open(tmp_path / "c").names() == []


def test_replacing_a_map_keeps_one_entry(tmp_path):
    a, b = make_record(0), make_record(1, name="img_000.jpg")
    with MapCache.create(tmp_path / "c", PARTS) as w:
        w.add(a)
        w.add(make_record(2))
        w.add(b)
    cache = MapCache.open(tmp_path / "c", verify="full")
    assert cache.names() == ["img_000.jpg", "img_002.jpg"]
    assert_same(cache.get("img_000.jpg"), b)
    assert len(list((tmp_path / "c" / MAPS_DIR).iterdir())) == 2


def test_maps_added_before_an_error_are_kept(tmp_path):
    with pytest.raises(RuntimeError):
        with MapCache.create(tmp_path / "c", PARTS, flush_every=100) as w:
            w.add(make_record(0))
            w.add(make_record(1))
            raise RuntimeError("inference failed")
    cache = MapCache.open(tmp_path / "c", verify="full")
    assert cache.names() == ["img_000.jpg", "img_001.jpg"]
    assert not (tmp_path / "c" / PENDING).exists()


def test_second_writer_is_refused(tmp_path):
    w = MapCache.create(tmp_path / "c", PARTS)
    try:
        with pytest.raises(CacheError, match="another process"):
            MapCache.create(tmp_path / "c", PARTS)
    finally:
        w.close()
    MapCache.create(tmp_path / "c", PARTS).close()


# ------------------------------------------------------------------------------ fingerprints
def test_resume_with_same_fingerprint(tmp_path):
    recs = [make_record(i) for i in range(6)]
    with MapCache.create(tmp_path / "c", PARTS, meta={"params": {"thresh": 0.3}}) as w:
        for r in recs[:3]:
            w.add(r)
    w = MapCache.create(tmp_path / "c", dict(PARTS), meta={"target": "karmakaryx"})
    assert w.resumed == 3 and w.redone == []
    assert [w.has(r.name) for r in recs] == [True] * 3 + [False] * 3
    for r in recs:
        if not w.has(r.name):
            w.add(r)
    w.close()
    cache = MapCache.open(tmp_path / "c", verify="full")
    assert cache.names() == [r.name for r in recs]
    assert cache.meta == {"params": {"thresh": 0.3}, "target": "karmakaryx"}


def test_different_fingerprint_refused_then_overwritten(tmp_path):
    write_cache(tmp_path / "c", n=3)
    (tmp_path / "c" / "study.journal").write_text("{}\n")
    other = dict(PARTS, model="sha256:" + "cd" * 32)
    with pytest.raises(CacheError, match=r"different fingerprint.*differs in: model.*overwrite"):
        MapCache.create(tmp_path / "c", other)
    with pytest.raises(CacheError, match="differs in: dtype"):
        MapCache.create(tmp_path / "c", PARTS, dtype="float16")
    assert MapCache.open(tmp_path / "c", verify="full").names() == [f"img_{i:03d}.jpg" for i in range(3)]
    with pytest.warns(CacheWarning, match="study.journal"):
        w = MapCache.create(tmp_path / "c", other, overwrite=True)
    assert len(w) == 0
    w.add(make_record(7))
    w.close()
    cache = MapCache.open(tmp_path / "c", verify="full")
    assert cache.names() == ["img_007.jpg"]
    assert cache.fingerprint == fingerprint_of(other)
    assert cache.info()["studies"] == ["study.journal"]
    assert len(list((tmp_path / "c" / MAPS_DIR).iterdir())) == 1
    # overwrite with the same fingerprint starts again too
    with pytest.warns(CacheWarning, match="study.journal"):
        w = MapCache.create(tmp_path / "c", other, overwrite=True)
    assert len(w) == 0
    w.close()


def test_create_refuses_a_folder_that_is_not_a_cache(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(CacheError, match="not empty and holds no map cache"):
        MapCache.create(tmp_path / "c", PARTS)
    with pytest.raises(CacheError, match="not empty"):
        MapCache.create(tmp_path / "c", PARTS, overwrite=True)
    assert (tmp_path / "c" / "notes.txt").read_text() == "mine"
    (tmp_path / "f").write_text("x")
    with pytest.raises(CacheError, match="not a folder"):
        MapCache.create(tmp_path / "f", PARTS)
    with pytest.raises(ValueError, match="JSON"):
        MapCache.create(tmp_path / "d", {"model": object()})
    with pytest.raises(ValueError, match="dtype"):
        MapCache.create(tmp_path / "d", PARTS, dtype="float64")


def test_corrupt_manifest_needs_overwrite(tmp_path):
    write_cache(tmp_path / "c", n=2)
    (tmp_path / "c" / MANIFEST).write_text('{"format": "unclip-tuner map cache", "sche')
    with pytest.raises(CacheError, match="manifest.json.*overwrite"):
        MapCache.create(tmp_path / "c", PARTS)
    with MapCache.create(tmp_path / "c", PARTS, overwrite=True) as w:
        assert len(w) == 0


# ------------------------------------------------------------------------------ verification
def _corrupt_byte(path: Path, offset: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_open_reports_the_damaged_file(tmp_path):
    recs = write_cache(tmp_path / "c", n=12)
    root = tmp_path / "c"
    cache = MapCache.open(root, verify="full")
    first, middle, last = (cache.map_file(recs[i].name) for i in (0, 6, 11))

    # A truncated map anywhere is found by the size check of every open.
    data = middle.read_bytes()
    middle.write_bytes(data[:100])
    for mode in ("none", "sample", "full"):
        if mode == "none":
            c = MapCache.open(root, verify="none")
            with pytest.raises(CacheError, match="unreadable|cache says"):
                c.get(recs[6].name)
            continue
        with pytest.raises(CacheError, match=rf"{middle.name}.*size 100 bytes"):
            MapCache.open(root, verify=mode)
    middle.write_bytes(data)

    # A flipped byte (same size) in the first or last map is always in the sample.
    for f in (first, last):
        _corrupt_byte(f)
        with pytest.raises(CacheError, match=rf"{f.name}.*crc32"):
            MapCache.open(root, verify="sample")
        _corrupt_byte(f)
    # A flipped byte is always found by a full check and by get(verify=True).
    _corrupt_byte(middle)
    with pytest.raises(CacheError, match=rf"{middle.name}.*crc32"):
        MapCache.open(root, verify="full")
    with pytest.raises(CacheError, match="crc32"):
        MapCache.open(root, verify="none").get(recs[6].name, verify=True)
    _corrupt_byte(middle)
    MapCache.open(root, verify="full")

    middle.unlink()
    for mode in ("none", "sample"):
        with pytest.raises(CacheError, match=rf"{middle.name}.*missing"):
            MapCache.open(root, verify=mode)


def test_open_errors_name_manifest_and_index(tmp_path):
    write_cache(tmp_path / "c", n=2)
    root = tmp_path / "c"
    with pytest.raises(CacheError, match="no such cache folder"):
        MapCache.open(tmp_path / "nothing")
    with pytest.raises(CacheError, match="not a folder"):
        MapCache.open(root / MANIFEST)
    index = (root / INDEX).read_bytes()
    (root / INDEX).write_bytes(index[: len(index) // 2])
    with pytest.raises(CacheError, match="index.parquet: unreadable index"):
        MapCache.open(root)
    (root / INDEX).unlink()
    with pytest.raises(CacheError, match="index.parquet: index missing"):
        MapCache.open(root)
    (root / INDEX).write_bytes(index)
    manifest = (root / MANIFEST).read_text()
    for text, pattern in [("{not json", "corrupt manifest"), ("[]", "not an unclip-tuner"),
                          (manifest.replace('"schema_version": 1', '"schema_version": 99'),
                           "newer unclip-tuner"),
                          (manifest.replace('"dtype": "float32"', '"dtype": "int8"'), "dtype")]:
        (root / MANIFEST).write_text(text)
        with pytest.raises(CacheError, match=pattern) as exc:
            MapCache.open(root)
        assert "manifest.json" in str(exc.value)
    (root / MANIFEST).unlink()
    with pytest.raises(CacheError, match="manifest.json: missing"):
        MapCache.open(root)


# ------------------------------------------------------------------------------ crash recovery
def test_resume_after_simulated_crash(tmp_path):
    recs = [make_record(i) for i in range(8)]
    root = tmp_path / "c"
    write_cache(root, n=5)
    maps = root / MAPS_DIR
    cache = MapCache.open(root)
    # (a) stray temporary files of a write that never finished
    (maps / ".img_005-0000000000.npy.tmp-123").write_bytes(b"\x93NUMPY half")
    (root / f".{INDEX}.tmp-123").write_bytes(b"PAR1")
    # (b) a complete map file whose row never reached the index or the journal
    orphan = maps / "img_005-ffffffffff.npy"
    orphan.write_bytes(cache.map_file(recs[1].name).read_bytes())
    # (c) a truncated map and (d) an altered one, both listed in the index
    truncated, altered = cache.map_file(recs[2].name), cache.map_file(recs[3].name)
    truncated.write_bytes(truncated.read_bytes()[:-64])
    _corrupt_byte(altered)

    with pytest.raises(CacheError, match=truncated.name):
        MapCache.open(root, verify="sample")
    with pytest.warns(CacheWarning, match="2 cached map"):
        w = MapCache.create(root, PARTS)
    assert sorted(w.redone) == [recs[2].name, recs[3].name]
    assert [w.has(r.name) for r in recs] == [True, True, False, False, True, False, False, False]
    assert not orphan.exists() and not truncated.exists() and not altered.exists()
    assert not any(p.name.startswith(".") for p in maps.iterdir())
    assert not (root / f".{INDEX}.tmp-123").exists()
    for r in recs:
        if not w.has(r.name):
            w.add(r)
    w.close()
    cache = MapCache.open(root, verify="full")
    assert sorted(cache.names()) == [r.name for r in recs]
    for r in recs:
        assert_same(cache.get(r.name), r)
    assert len(list(maps.iterdir())) == len(recs)


def test_pending_journal_rows_are_used_and_checked(tmp_path):
    root = tmp_path / "c"
    recs = [make_record(i) for i in range(5)]
    w = MapCache.create(root, PARTS, flush_every=3)
    for r in recs:
        w.add(r)
    # Leave without the final rewrite: rows 3 and 4 exist only in the journal.
    w.abort()
    cache = MapCache.open(root, verify="full")
    assert cache.names() == [r.name for r in recs] and cache.pending == 2
    # A half-written last journal line (a crash while appending) is ignored.
    with open(root / PENDING, "ab") as fh:
        fh.write(b'{"file": "img_009.jpg", "map_fi')
    # A journal row whose map file was damaged is not used.
    _corrupt_byte(cache.map_file(recs[4].name))
    cache = MapCache.open(root, verify="full")
    assert cache.names() == [r.name for r in recs[:4]] and cache.pending == 1
    with pytest.warns(CacheWarning, match="1 cached map"):
        w = MapCache.create(root, PARTS)
    assert w.resumed == 4 and w.redone == [recs[4].name]
    w.add(recs[4])
    w.close()
    cache = MapCache.open(root, verify="full")
    assert cache.names() == [r.name for r in recs] and cache.pending == 0


CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {repo!r})
    import numpy as np
    from unclip_tuner.cache import MapCache, MapRecord, letterbox_inverse_matrix

    root, n, die_at, phase = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    real_replace, calls = os.replace, [0]

    def replace(src, dst):
        calls[0] += 1
        if calls[0] == die_at and phase == "before":
            os._exit(9)
        real_replace(src, dst)
        if calls[0] == die_at and phase == "after":
            os._exit(9)

    os.replace = replace
    w = MapCache.create(root, {parts!r}, flush_every=4)
    for i in range(n):
        name = f"img_{{i:04d}}.jpg"
        if w.has(name):
            continue
        prob = np.random.default_rng(i).random((64, 64), dtype=np.float32)
        w.add(MapRecord(name, prob, letterbox_inverse_matrix(90 + i, 70, 64, 64), 90 + i, 70))
        print(i, flush=True)
    w.close()
    print("done", flush=True)
""")


def _expected(i: int) -> MapRecord:
    prob = np.random.default_rng(i).random((64, 64), dtype=np.float32)
    return MapRecord(f"img_{i:04d}.jpg", prob, letterbox_inverse_matrix(90 + i, 70, 64, 64), 90 + i, 70)


def _child(tmp_path: Path) -> Path:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO), parts=PARTS))
    return script


def _finish_and_check(root: Path, n: int) -> None:
    """Resume in this process, then check every image is cached exactly once and verifies."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        w = MapCache.create(root, PARTS)
    for i in range(n):
        r = _expected(i)
        if not w.has(r.name):
            w.add(r)
    w.close()
    cache = MapCache.open(root, verify="full")
    assert cache.names() == [f"img_{i:04d}.jpg" for i in range(n)]
    for i in range(n):
        assert_same(cache.get(f"img_{i:04d}.jpg"), _expected(i))
    files = sorted(p.name for p in (root / MAPS_DIR).iterdir())
    assert len(files) == n and not any(f.startswith(".") for f in files)
    assert not (root / PENDING).exists()
    assert not any(".tmp" in p.name for p in root.iterdir())


# os.replace calls: 1-3 while creating (manifest, empty index, manifest), then one per map
# and one per index rewrite (after every 4th map). Call 7 is the 4th map, 8 the first index
# rewrite, 9 the 5th map.
@pytest.mark.parametrize("die_at,phase", [(5, "before"), (7, "after"), (8, "before"),
                                          (8, "after"), (9, "after")])
def test_process_dies_at_each_step_then_resumes(tmp_path, die_at, phase):
    root, n = tmp_path / "c", 10
    proc = subprocess.run([sys.executable, str(_child(tmp_path)), str(root), str(n), str(die_at),
                           phase], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    _finish_and_check(root, n)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill9_while_writing_then_resume(tmp_path):
    root, n = tmp_path / "c", 120
    proc = subprocess.Popen([sys.executable, str(_child(tmp_path)), str(root), str(n), "0", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = 0
        for line in proc.stdout:
            if line.strip() == "done":
                break
            seen = int(line)
            if seen >= 40:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    cache = MapCache.open(root, verify="full")  # what was written so far reads as good
    assert 40 <= len(cache) < n
    _finish_and_check(root, n)
