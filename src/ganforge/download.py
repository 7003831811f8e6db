"""Downloads with checksum verification into the ganforge cache.

Files land in `cache_dir()` ($GANFORGE_CACHE, else ~/.cache/ganforge), are written to a temporary name, verified
(sha256 or md5) and renamed, so an interrupted download never leaves a file that looks complete. Offline, or when
$GANFORGE_OFFLINE=1, the error names the URL and says how to supply a local copy.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from .errors import GanforgeError


def cache_dir(sub: str = "") -> Path:
    """The ganforge cache directory (created on demand); `$GANFORGE_CACHE` overrides ~/.cache/ganforge."""
    root = Path(os.environ.get("GANFORGE_CACHE") or Path.home() / ".cache" / "ganforge")
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: str | os.PathLike, *, sha256: str | None = None, md5: str | None = None, what: str = "file") -> None:
    """Raise a one-line error when `path` does not have the expected checksum."""
    for algo, expected in (("sha256", sha256), ("md5", md5)):
        if expected is None:
            continue
        got = file_digest(path, algo)
        if got.lower() != expected.lower():
            raise GanforgeError(f"{what}: {path} has {algo} {got}, expected {expected} (wrong or corrupt file)")


def fetch(url: str, dest: str | os.PathLike, *, sha256: str | None = None, md5: str | None = None,
          what: str = "file", hint: str = "", progress: bool = True) -> Path:
    """Return `dest`, downloading `url` there first unless a verified copy is already present."""
    dest = Path(dest)
    if dest.exists():
        try:
            verify_file(dest, sha256=sha256, md5=md5, what=what)
            return dest
        except GanforgeError:
            dest.unlink()  # stale or corrupt copy: fetch again
    how = f"; {hint}" if hint else ""
    if os.environ.get("GANFORGE_OFFLINE") == "1":
        raise GanforgeError(f"{what}: not in cache and GANFORGE_OFFLINE=1; download {url} yourself{how}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}", leave=False)
            while True:
                block = resp.read(1 << 20)
                if not block:
                    break
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
        verify_file(tmp, sha256=sha256, md5=md5, what=f"{what} downloaded from {url}")
        os.replace(tmp, dest)
    except GanforgeError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise GanforgeError(f"{what}: cannot download {url} ({reason}){how}") from e
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def copy_into_cache(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a user-supplied file into the cache atomically."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return dest
