"""File-writing helpers shared by everything that writes user-visible files.

- `follow_umask(path)`: give a file (or directory) the permissions a plain `open()` / `mkdir()` would have under the
  process umask. Some writers (safetensors, `tempfile.mkstemp`, `tempfile.mkdtemp`) create 0600 / 0700 files; the
  files ganforge hands to users (exports, packed datasets, cached features) must follow the umask like everything
  else in the run directory.
- `save_safetensors(tensors, path, metadata)`: write a safetensors file atomically (temp file + rename) with
  umask-following permissions.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else by the set-and-restore dance."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """chmod `path` to 0666 (files) or 0777 (directories) minus the umask, as open()/mkdir() would create it."""
    p = Path(path)
    base = 0o777 if p.is_dir() else 0o666
    os.chmod(p, base & ~current_umask())


def save_safetensors(tensors: Mapping, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write `tensors` to `path` atomically (a crash leaves the old file or none), with umask permissions."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(dict(tensors), str(tmp), metadata=metadata)
        follow_umask(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# ------------------------------------------------------------------------------------------ directories replaced whole
_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    return False  # EINVAL/ENOSYS (file system or kernel without it): fall back to two renames


def staging_dir(dest: Path) -> Path:
    """Where `replace_dir` expects the new content of `dest` to be written first."""
    return dest.with_name(f".{dest.name}.tmp{os.getpid()}")


def replace_dir(tmp: Path, dest: Path) -> None:
    """Make the complete directory `tmp` become `dest` in one step, removing the old `dest`.

    On Linux the swap is one atomic renameat2(RENAME_EXCHANGE): at every instant `dest` is the old or the new complete
    directory. Elsewhere the old one is first renamed to `.NAME.old<pid>`; a kill between the two renames leaves no
    `dest` but both complete copies, and `recover_dir(dest)` (run at the next start) puts the newest one back.
    """
    import shutil

    tmp, dest = Path(tmp), Path(dest)
    _fsync_tree(tmp)
    crash_point("replace-dir")
    if dest.exists() and _exchange(tmp, dest):
        shutil.rmtree(tmp)  # tmp now holds the old directory
    else:
        old = dest.with_name(f".{dest.name}.old{os.getpid()}")
        if dest.exists():
            os.replace(dest, old)
        crash_point("replace-dir-between-renames")
        os.replace(tmp, dest)
        if old.exists():
            shutil.rmtree(old)
    fsync_dir(dest.parent)


def recover_dir(dest: Path) -> list[Path]:
    """After a kill: restore `dest` when a kill fell between `replace_dir`'s two renames, then remove stale copies.

    Both copies exist only in that window, and then the staged one is complete (it is fsynced before the first
    rename): it becomes `dest`. A staged copy without an old one is an interrupted first write and is discarded.
    Returns the stale paths removed.
    """
    import shutil

    dest = Path(dest)
    staged = sorted(dest.parent.glob(f".{dest.name}.tmp*"))
    old = sorted(dest.parent.glob(f".{dest.name}.old*"))
    if not dest.exists() and old:
        keep = staged[-1] if staged else old[-1]
        os.replace(keep, dest)
        (staged if staged else old).remove(keep)
    stale = staged + old
    for p in stale:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return stale


def remove_stale_temps(directory: Path, pattern: str) -> list[Path]:
    """Delete leftovers of interrupted atomic writes (`.NAME.tmpPID` files) in `directory`; return them."""
    d = Path(directory)
    if not d.is_dir():
        return []
    stale = sorted(d.glob(pattern))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _fsync_tree(path: Path) -> None:
    for p in Path(path).iterdir():
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(path)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it survives a power cut (best effort where the OS refuses)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


# ------------------------------------------------------------------------------------------------------ test hooks
def crash_point(name: str) -> None:
    """Kill this process with SIGKILL at the named point when GANFORGE_CRASH_AT=name (used by the kill tests only)."""
    if os.environ.get("GANFORGE_CRASH_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
