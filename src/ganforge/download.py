"""Downloads with checksum verification into the ganforge cache.

Files land in `cache_dir()` ($GANFORGE_CACHE, else ~/.cache/ganforge), are written to a temporary name, verified
(sha256 or md5) and renamed, so an interrupted download never leaves a file that looks complete. Offline, or when
$GANFORGE_OFFLINE=1, the error names the URL and says how to supply a local copy. A cached file whose checksum is
wrong (corrupt, or an outdated version) is moved aside to `NAME.corrupt` (replacing an older one), never deleted
silently: a warning says so when the fresh download succeeds, and the error says so when it fails. Files are created
with open(), so they get the permissions the umask gives.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import warnings
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


def checksum_mismatch(path: str | os.PathLike, *, sha256: str | None = None, md5: str | None = None) -> str:
    """"" when `path` has the expected checksums, else e.g. "sha256 1a2b..., expected 3c4d..."."""
    for algo, expected in (("sha256", sha256), ("md5", md5)):
        if expected is None:
            continue
        got = file_digest(path, algo)
        if got.lower() != expected.lower():
            return f"{algo} {got}, expected {expected}"
    return ""


def verify_file(path: str | os.PathLike, *, sha256: str | None = None, md5: str | None = None, what: str = "file") -> None:
    """Raise a one-line error when `path` does not have the expected checksum."""
    wrong = checksum_mismatch(path, sha256=sha256, md5=md5)
    if wrong:
        raise GanforgeError(f"{what}: {path} has {wrong} (wrong or corrupt file)")


def _move_aside(dest: Path, wrong: str) -> str:
    """Move a cached file with a wrong checksum to DEST.corrupt; return the sentence that says so."""
    aside = dest.with_name(dest.name + ".corrupt")
    try:
        os.replace(dest, aside)
        done = f"moved aside to {aside}"
    except OSError as e:  # e.g. a read-only cache: the download below then fails and says why
        done = f"could not be moved aside ({e.strerror or e})"
    return f"the cached {dest} was corrupt or outdated ({wrong}) and was {done}"


def fetch(url: str, dest: str | os.PathLike, *, sha256: str | None = None, md5: str | None = None,
          what: str = "file", hint: str = "", progress: bool = True) -> Path:
    """Return `dest`, downloading `url` there first unless a verified copy is already present.

    A present copy with a wrong checksum is moved aside to `dest.corrupt` and downloaded again; the warning (on
    success) or the error (on failure) says where the bad copy went.
    """
    dest = Path(dest)
    cached = ""  # what happened to a bad cached copy, for the warning / error
    if dest.exists():
        wrong = checksum_mismatch(dest, sha256=sha256, md5=md5)
        if not wrong:
            return dest
        cached = _move_aside(dest, wrong)
    how = f"; {hint}" if hint else ""
    before = f"{cached}; " if cached else ""
    if os.environ.get("GANFORGE_OFFLINE") == "1":
        where = "GANFORGE_OFFLINE=1, so it was not downloaded again" if cached else \
            "not in cache and GANFORGE_OFFLINE=1"
        raise GanforgeError(f"{what}: {before}{where}; download {url} yourself{how}")
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
        wrong = checksum_mismatch(tmp, sha256=sha256, md5=md5)
        if wrong:
            raise GanforgeError(f"{what}: {before}the file downloaded from {url} has {wrong} (wrong or corrupt "
                                f"file){how}")
        os.replace(tmp, dest)
    except GanforgeError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise GanforgeError(f"{what}: {before}cannot download {url} ({reason}){how}") from e
    finally:
        if tmp.exists():
            tmp.unlink()
    if cached:
        warnings.warn(f"{what}: {cached}; downloaded a fresh copy from {url}", stacklevel=2)
    return dest


def copy_into_cache(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a user-supplied file into the cache atomically (umask permissions: copyfile creates it with open())."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest
