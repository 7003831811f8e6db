"""Up-front image verification of a folder dataset: cold (empty cache), warm (cache hit) and the fingerprint alone.

Generates N small images (32x32; 3/4 PNG, 1/4 JPEG, in 10 class folders) in a temporary directory: a few images are
encoded once and each file gets a distinct text chunk (PNG tEXt / JPEG COM), so generating 100k files takes
seconds. Times, each the best of --repeat runs:
- fingerprint: scanning the folder, stat-ing every file and hashing the listing (what every construction costs);
- cold: building the `folder` dataset with an empty verification cache (scan + fingerprint + checking every file);
- warm: building it again (cache hit: scan + fingerprint + reading the cached result);
- pools (--pools): checking every file serially, with a thread pool and with a process pool (why a process pool).
The files were just written, so the OS page cache is warm; on a cold disk the first check is bound by reads.
Prints markdown table rows: | figure | command | machine |.

    python benchmarks/bench_verify_images.py [--n 10000,100000] [--repeat 3] [--pools]
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import struct
import sys
import tempfile
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return f"{model}, {usable} cores usable ({os.cpu_count()} online), Python {platform.python_version()}"


def _encoded(seed: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


def _png_with_text(png: bytes, text: bytes) -> bytes:
    """Insert a tEXt chunk (valid CRC) right after IHDR, so each file differs while staying a valid PNG."""
    body = b"tEXt" + b"id\0" + text
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]  # 8-byte signature + 25-byte IHDR chunk


def _jpeg_with_comment(jpg: bytes, text: bytes) -> bytes:
    """Insert a COM segment after the SOI marker."""
    return jpg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpg[2:]


def generate(root: Path, n: int) -> None:
    pngs = [_encoded(s, "PNG") for s in range(16)]
    jpgs = [_encoded(s, "JPEG") for s in range(16)]
    for k in range(10):
        (root / f"class{k}").mkdir(parents=True)
    for i in range(n):
        tag = str(i).encode()
        if i % 4 == 3:
            data, ext = _jpeg_with_comment(jpgs[i % 16], tag), "jpg"
        else:
            data, ext = _png_with_text(pngs[i % 16], tag), "png"
        (root / f"class{i % 10}" / f"{i:07d}.{ext}").write_bytes(data)


def best(fn, repeat: int, reset=None) -> float:
    times = []
    for _ in range(repeat):
        if reset is not None:
            reset()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", default="10000,100000", help="comma-separated file counts")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--pools", action="store_true", help="also time serial / thread pool / process pool checks")
    a = p.parse_args()
    from ganforge.data import verify as V
    from ganforge.data.common import fingerprint
    from ganforge.data.folder import ImageFolder, _listing, scan_image_folder

    cmd = "python benchmarks/bench_verify_images.py " + " ".join(sys.argv[1:])
    where = machine()
    work = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        cache = work / "cache"
        os.environ["GANFORGE_CACHE"] = str(cache)
        for n in [int(v) for v in a.n.split(",")]:
            root = work / f"imgs{n}"
            t0 = time.perf_counter()
            generate(root, n)
            gen = time.perf_counter() - t0

            def fp() -> str:
                files, labels, _ = scan_image_folder(root)
                return fingerprint("folder", {}, "\n".join(_listing(root, files, labels)))

            def build() -> None:
                ds = ImageFolder(root=str(root), progress=False)
                assert len(ds) == n and not ds.bad_files

            def clear() -> None:
                shutil.rmtree(cache / "verify", ignore_errors=True)

            t_fp = best(fp, a.repeat)
            t_cold = best(build, a.repeat, reset=clear)
            t_warm = best(build, a.repeat)
            print(f"| {n:,} files (32x32, 3/4 PNG 1/4 JPEG; generated in {gen:.1f} s): cold verify + build "
                  f"{t_cold:.2f} s ({n / t_cold:,.0f} img/s, {V.worker_count()} worker processes), warm (cache hit) "
                  f"{t_warm:.2f} s, fingerprint alone {t_fp:.2f} s | `{cmd}` | {where} |", flush=True)
            if a.pools:
                paths = [str(f) for f in scan_image_folder(root)[0]]
                chunks = [paths[i:i + V.CHUNK] for i in range(0, len(paths), V.CHUNK)]

                def threads() -> None:
                    with ThreadPoolExecutor(V.worker_count()) as pool:
                        list(pool.map(V.check_many, chunks))

                t_serial = best(lambda: V.check_many(paths), a.repeat)
                t_threads = best(threads, a.repeat)
                t_procs = best(lambda: V.check_files(paths, progress=False), a.repeat)
                print(f"| {n:,} files, check only: serial {t_serial:.2f} s, {V.worker_count()} threads "
                      f"{t_threads:.2f} s, {V.worker_count()} processes {t_procs:.2f} s | `{cmd}` | {where} |",
                      flush=True)
            shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    warnings.simplefilter("error")  # a skipped / bad generated file would be a benchmark bug
    main()
