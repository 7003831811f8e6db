"""Up-front checks of every image file of a folder dataset, in parallel, cached per folder fingerprint.

Why: the folder dataset decodes images on demand, so without this a corrupt file surfaces only when the shuffle first
draws it (hours into a run, and again on every resume). `verify_folder` checks all files before training starts and
returns the bad ones with a reason; the dataset then fails with one message naming all of them, or skips them.

What the fast check catches (`check_image`, about 0.1 ms per small file):
- empty files, files that are not a recognised image format (random bytes, HTML error pages saved as .jpg), headers
  that are truncated or malformed, and images that Pillow refuses as decompression bombs;
- PNG: a truncated file or damaged data anywhere in it (Pillow's `verify()` reads every chunk and checks its CRC, up
  to the IEND chunk; a PNG cut just before IEND is reported although Pillow could still decode it);
- JPEG, GIF, WebP, BMP: a truncated body, by a cheap test of the file's end (JPEG end-of-image marker, GIF trailer,
  RIFF / BMP declared size); files that fail it are fully decoded, so a valid file with trailing data is not reported;
- TIFF (whose `verify()` checks nothing): always fully decoded.
What it cannot catch: damage inside a JPEG / GIF / WebP / BMP body that keeps the file's length and end marker
(flipped bytes decode to wrong pixels, or fail only at decode time), zlib data in a PNG that is corrupt but carries a
valid CRC, and a later size mismatch between images (reported when the image is loaded).

Results are cached under `cache_dir("verify")` ($GANFORGE_CACHE) by a hash of the folder listing (relative path,
label, size and modification time of every file), so an unchanged folder is not checked again; a changed file, or a
file added or removed, changes the key and the folder is checked again.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .common import fingerprint

VERIFY_VERSION = 1  # bump when the checks change, so cached results from older checks are not trusted
PARALLEL_MIN = 1024  # fewer files than this are checked in this process (a pool costs more than it saves)
CHUNK = 256  # files per worker task
_FULL_DECODE = ("TIFF", "MPO")  # formats whose header check says too little: always decoded


def worker_count() -> int:
    """CPUs this process may run on (affinity / container aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _tail_ok(path: str, fmt: str, size: int) -> bool:
    """Cheap test that a JPEG / GIF / WebP / BMP file is complete (False means: decode it to be sure)."""
    with open(path, "rb") as f:
        head = f.read(16)
        f.seek(max(0, size - 64))
        tail = f.read()
    if fmt == "JPEG":
        return tail.rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9")
    if fmt == "GIF":
        return tail.rstrip(b"\x00").endswith(b";")
    if fmt == "WEBP":
        return size >= int.from_bytes(head[4:8], "little") + 8
    if fmt == "BMP":
        return size >= int.from_bytes(head[2:6], "little")
    return True


def _reason(e: BaseException, path: str) -> str:
    """A short, one-line reason (Pillow messages repeat the path; drop it)."""
    from PIL import UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        return "not a recognised image format"
    msg = " ".join(str(e).replace(f"'{path}'", "").replace(path, "").split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def check_image(path: str) -> str:
    """"" when `path` passes the fast check (see the module docstring), else a one-line reason."""
    from PIL import Image

    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as im:
            fmt, (w, h) = im.format or "", im.size
            im.verify()
        if w <= 0 or h <= 0:
            return f"declares an empty size {w}x{h}"
        if fmt in _FULL_DECODE or not _tail_ok(path, fmt, size):
            with Image.open(path) as im:
                im.load()
    except Exception as e:  # noqa: BLE001 -- any reader failure makes the file bad; the reason says which
        return _reason(e, path)
    return ""


def check_many(paths: list[str]) -> list[str]:
    """`check_image` of each path (one pool task)."""
    return [check_image(p) for p in paths]


def check_files(paths: list[str], *, progress: bool = True, workers: int | None = None) -> list[str]:
    """Reasons ("" = good) for `paths`, checked by a process pool of `workers` (default: the CPU count).

    A process pool, not threads: Pillow's header parsing is Python code that holds the GIL, so threads do not scale
    (benchmarks/bench_verify_images.py measures both). The progress bar appears only when checking takes over a
    second (tqdm `delay`); `progress=False` or TQDM_DISABLE=1 hides it.
    """
    from tqdm import tqdm

    workers = workers or worker_count()
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    out: list[str] = []
    with tqdm(total=len(paths), unit="img", desc="verifying images", disable=not progress, delay=1.0,
              leave=False) as bar:
        if workers == 1 or len(paths) < PARALLEL_MIN:
            for chunk in chunks:
                out += check_many(chunk)
                bar.update(len(chunk))
            return out
        import multiprocessing as mp
        from concurrent.futures.process import BrokenProcessPool

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        try:
            with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=ctx) as pool:
                for chunk, reasons in zip(chunks, pool.map(check_many, chunks)):
                    out += reasons
                    bar.update(len(chunk))
        except (OSError, BrokenProcessPool):  # no processes here (sandbox, no /dev/shm): check the rest serially
            for start in range(len(out), len(paths), CHUNK):
                out += check_many(paths[start:start + CHUNK])
                bar.update(min(CHUNK, len(paths) - start))
    return out


def listing_key(listing: list[str]) -> str:
    """Cache key of a folder listing (lines "relpath|label|size|mtime_ns")."""
    return fingerprint("folder-verify", {"version": VERIFY_VERSION}, "\n".join(listing))


def bad_list_path(key: str) -> Path:
    """Where the full bad-file list of the folder with cache key `key` is written (one "relpath<TAB>reason" a line)."""
    from ..download import cache_dir

    return cache_dir("verify") / f"{key}-bad.txt"


def write_bad_list(bad: list[tuple[str, str]], path: str | os.PathLike) -> Path:
    """Write `bad` as "relpath<TAB>reason" lines to `path` (atomically; umask permissions, as open() gives)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text("".join(f"{rel}\t{reason}\n" for rel, reason in bad), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _read_cache(path: Path, count: int) -> list[tuple[str, str]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != VERIFY_VERSION or data.get("count") != count:
            return None
        return [(str(rel), str(reason)) for rel, reason in data["bad"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged cache entry: check again


def verify_folder(root: Path, files: list[Path], listing: list[str], *, progress: bool = True,
                  use_cache: bool = True) -> tuple[list[tuple[str, str]], str]:
    """([(relpath, reason), ...] of the bad files among `files`, cache key); cached by the listing's hash.

    Args:
        root: the folder; bad paths are given relative to it.
        files: the image files under `root`.
        listing: one "relpath|label|size|mtime_ns" line per file (the dataset's fingerprint input).
        progress: allow the progress bar (shown only when checking takes over a second).
        use_cache: read and write the cache.
    """
    from ..download import cache_dir

    key = listing_key(listing)
    cache = cache_dir("verify") / f"{key}.json"
    if use_cache:
        hit = _read_cache(cache, len(files))
        if hit is not None:
            return hit, key
    t0 = time.perf_counter()
    reasons = check_files([str(f) for f in files], progress=progress)
    bad = [(f.relative_to(root).as_posix(), r) for f, r in zip(files, reasons) if r]
    if use_cache:
        data = {"version": VERIFY_VERSION, "count": len(files), "seconds": round(time.perf_counter() - t0, 3),
                "root": str(root), "bad": bad}
        tmp = cache.with_name(f".{cache.name}.tmp{os.getpid()}")
        try:
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, cache)
        except OSError:
            pass  # a read-only cache only costs a re-check next time
        finally:
            if tmp.exists():
                tmp.unlink()
    return bad, key
