"""Reliability of data handling: `data pack` output checks, corrupt cached downloads, up-front image verification.

Every failure test checks the one-line message and that nothing on disk changed.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import download
from ganforge.data import folder as F
from ganforge.data import verify as V
from ganforge.data.common import fingerprint as make_fingerprint
from ganforge.data.pack import pack_source, read_packed
from ganforge.errors import GanforgeError
from ganforge.registries import DATASETS
from test_bad_input import assert_one_line_error, run_cli


# ---------------------------------------------------------------------------------------------------------- helpers
def png_bytes(seed: int, h: int = 8, w: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(seed: int, size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `root` with its bytes and mtime: compared before and after a refused operation."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def folder(root: Path, **opts):
    return DATASETS.build("folder", {"root": str(root), **opts}, where="data", split="train", cache_dir=None)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


@pytest.fixture
def umask():
    """Set a umask for the test (0o027 differs from safetensors' 0600 and from the usual 0o022) and restore it."""
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("GANFORGE_CACHE", str(cache))
    monkeypatch.delenv("GANFORGE_OFFLINE", raising=False)
    return cache


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    """3 good 8x8 PNGs and 3 bad files: a truncated PNG header, random bytes named .jpg, a zero-byte .png."""
    root = tmp_path / "imgs"
    for i in range(3):
        write(root / f"good{i}.png", png_bytes(i))
    write(root / "b_header.png", png_bytes(9)[:20])
    write(root / "c_random.jpg", np.random.default_rng(1).bytes(500))
    write(root / "d_empty.png", b"")
    return root


BAD = [("b_header.png", "OSError: Truncated File Read"), ("c_random.jpg", "not a recognised image format"),
       ("d_empty.png", "empty file (0 bytes)")]


class Spy:
    """Wraps verify.check_files and records the file lists it was asked to check."""

    def __init__(self, monkeypatch):
        self.calls: list[list[str]] = []
        real = V.check_files

        def spy(paths, **kw):
            self.calls.append(list(paths))
            return real(paths, **kw)

        monkeypatch.setattr(V, "check_files", spy)


# ------------------------------------------------------------------------------------------------------ A. data pack
@pytest.fixture
def good_folder(tmp_path) -> Path:
    root = tmp_path / "good"
    for i in range(3):
        write(root / f"{i}.png", png_bytes(i))
    return root


def test_pack_refuses_an_existing_output_unless_force(good_folder, tmp_path, capsys, umask):
    out = write(tmp_path / "out" / "d.safetensors", b"precious bytes")
    before = snapshot(tmp_path / "out")
    rc, _, err = run_cli(capsys, "data", "pack", good_folder, out)
    assert err == f"ganforge: error: data pack: output {out} already exists; pass --force to replace it\n"
    assert_one_line_error(rc, err)
    assert snapshot(tmp_path / "out") == before  # untouched, and no temporary file left
    rc, stdout, err = run_cli(capsys, "data", "pack", good_folder, out, "--force", "--no-progress")
    assert rc == 0, err
    images, _, _ = read_packed(out)
    assert images.shape == (3, 3, 8, 8) and stdout.startswith(f"wrote {out}")
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # not safetensors' 0600
    assert sorted(p.name for p in out.parent.iterdir()) == ["d.safetensors"]


def test_pack_file_follows_the_umask(good_folder, tmp_path, umask):
    out = tmp_path / "p.safetensors"
    pack_source(str(good_folder), str(out), progress=False)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_pack_into_a_directory_fails_before_decoding(bad_folder, tmp_path, capsys, monkeypatch):
    out = tmp_path / "outdir"
    write(out / "keep.txt", b"x")
    before, src_before = snapshot(out), snapshot(bad_folder)
    spy = Spy(monkeypatch)
    monkeypatch.setattr(F, "load_image", lambda *a, **k: pytest.fail("decoded an image"))
    rc, _, err = run_cli(capsys, "data", "pack", bad_folder, out)
    assert err == (f"ganforge: error: data pack: output {out} is a directory; give a file name such as "
                   f"{out / 'dataset.safetensors'}\n")  # names OUT, not the corrupt images checked otherwise first
    assert_one_line_error(rc, err)
    assert spy.calls == [] and snapshot(out) == before and snapshot(bad_folder) == src_before


def test_pack_under_a_file_fails_before_decoding(good_folder, tmp_path, capsys, monkeypatch):
    blocker = write(tmp_path / "notadir", b"x")
    out = blocker / "d.safetensors"
    spy = Spy(monkeypatch)
    rc, _, err = run_cli(capsys, "data", "pack", good_folder, out)
    assert_one_line_error(rc, err)
    assert err == f"ganforge: error: data pack: cannot write {out}: {blocker} is not a directory\n"
    assert spy.calls == [] and blocker.read_bytes() == b"x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_pack_into_an_unwritable_directory_fails_before_decoding(good_folder, tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    spy = Spy(monkeypatch)
    try:
        rc, _, err = run_cli(capsys, "data", "pack", good_folder, locked / "d.safetensors")
    finally:
        locked.chmod(0o755)
    assert err == (f"ganforge: error: data pack: cannot write {locked / 'd.safetensors'}: directory {locked} is "
                   f"not writable\n")
    assert_one_line_error(rc, err)
    assert spy.calls == [] and list(locked.iterdir()) == []


def test_pack_of_a_folder_reports_every_bad_file_at_once(bad_folder, tmp_path, capsys):
    out = tmp_path / "p.safetensors"
    rc, _, err = run_cli(capsys, "data", "pack", bad_folder, out)  # (no bar: nothing gets decoded)
    assert_one_line_error(rc, err, "data.root", "3 of 6", *(str(bad_folder / rel) for rel, _ in BAD))
    assert not out.exists() and list(tmp_path.glob("*.safetensors*")) == []


# ------------------------------------------------------------------------------------------- B. corrupt cached files
@pytest.fixture
def served(tmp_path, private_cache):
    """(url, sha256, cache dest) of a file served from a file:// URL, with a corrupt copy already in the cache."""
    src = write(tmp_path / "served" / "thing-1234.bin", b"the genuine contents" * 50)
    dest = write(private_cache / "things" / "thing-1234.bin", b"half a downl")
    return src.as_uri(), hashlib.sha256(src.read_bytes()).hexdigest(), dest


def _corrupt_note(dest: Path) -> str:
    wrong = hashlib.sha256(b"half a downl").hexdigest()
    return f"the cached {dest} was corrupt or outdated (sha256 {wrong}, expected "


def test_corrupt_cached_file_is_moved_aside_with_a_warning(served):
    url, sha, dest = served
    with pytest.warns(UserWarning) as rec:
        assert download.fetch(url, dest, sha256=sha, what="thing", progress=False) == dest
    assert [str(w.message) for w in rec] == [
        f"thing: {_corrupt_note(dest)}{sha}) and was moved aside to {dest}.corrupt; downloaded a fresh copy from {url}"]
    assert download.file_digest(dest) == sha
    assert Path(f"{dest}.corrupt").read_bytes() == b"half a downl"  # nothing lost silently


def test_corrupt_cached_file_offline_error_says_what_happened(served, monkeypatch):
    url, sha, dest = served
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    with pytest.raises(GanforgeError) as e:
        download.fetch(url, dest, sha256=sha, what="thing", hint="or pass --thing PATH", progress=False)
    assert one_line(e) == (f"thing: {_corrupt_note(dest)}{sha}) and was moved aside to {dest}.corrupt; "
                           f"GANFORGE_OFFLINE=1, so it was not downloaded again; download {url} yourself; "
                           f"or pass --thing PATH")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["thing-1234.bin.corrupt"]
    assert Path(f"{dest}.corrupt").read_bytes() == b"half a downl"


def test_corrupt_cached_file_unreachable_url_error_says_what_happened(served, tmp_path):
    _, sha, dest = served
    url = (tmp_path / "nowhere" / "thing-1234.bin").as_uri()
    with pytest.raises(GanforgeError) as e:
        download.fetch(url, dest, sha256=sha, what="thing", progress=False)
    msg = one_line(e)
    assert msg.startswith(f"thing: {_corrupt_note(dest)}{sha}) and was moved aside to {dest}.corrupt; "
                          f"cannot download {url} (")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["thing-1234.bin.corrupt"]


def test_a_missing_file_offline_error_is_unchanged(tmp_path, private_cache, monkeypatch):
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    with pytest.raises(GanforgeError) as e:
        download.fetch("file:///x/y.bin", private_cache / "y.bin", sha256="0" * 64, what="y", progress=False)
    assert one_line(e) == "y: not in cache and GANFORGE_OFFLINE=1; download file:///x/y.bin yourself"


def test_downloaded_and_copied_files_follow_the_umask(served, tmp_path, umask):
    url, sha, dest = served
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        download.fetch(url, dest, sha256=sha, progress=False)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    own = write(tmp_path / "own.bin", b"mine")
    own.chmod(0o600)
    copied = download.copy_into_cache(own, dest.parent / "sub" / "own.bin")
    assert stat.S_IMODE(copied.stat().st_mode) == 0o640 and copied.read_bytes() == b"mine"


# ----------------------------------------------------------------------------------------- C. up-front verification
def test_bad_files_give_one_error_naming_all_of_them(bad_folder, private_cache):
    before = snapshot(bad_folder)
    with pytest.raises(GanforgeError) as e:
        folder(bad_folder)
    listed = "; ".join(f"{bad_folder / rel} ({reason})" for rel, reason in BAD)
    assert one_line(e) == (f"data.root: 3 of 6 image files under {bad_folder} are unreadable: {listed}; fix or "
                           f"remove them, or set data.on_bad_image: skip to leave them out")
    assert snapshot(bad_folder) == before


def test_more_than_20_bad_files_are_listed_in_a_file(tmp_path, private_cache):
    root = tmp_path / "many"
    write(root / "a_good.png", png_bytes(0))
    for i in range(25):
        write(root / f"bad{i:02d}.png", b"")
    with pytest.raises(GanforgeError) as e:
        folder(root)
    msg = one_line(e)
    full = next((private_cache / "verify").glob("*-bad.txt"))
    listed = "; ".join(f"{root / f'bad{i:02d}.png'} (empty file (0 bytes))" for i in range(20))
    assert msg == (f"data.root: 25 of 26 image files under {root} are unreadable: {listed}; ... and 5 more (full "
                   f"list: {full}); fix or remove them, or set data.on_bad_image: skip to leave them out")
    assert full.read_text() == "".join(f"bad{i:02d}.png\tempty file (0 bytes)\n" for i in range(25))


def test_skip_leaves_bad_files_out_and_warns(tmp_path, private_cache):
    root = tmp_path / "cls"
    write(root / "cat" / "a_bad.png", b"")  # the first file: the native size must come from the first good one
    write(root / "cat" / "b.png", png_bytes(1, 8, 12))
    write(root / "dog" / "c.jpg", np.random.default_rng(1).bytes(300))
    write(root / "dog" / "d.png", png_bytes(2, 8, 12))
    with pytest.warns(UserWarning) as rec:
        ds = folder(root, on_bad_image="skip")
    assert [str(w.message) for w in rec] == [
        f"data.root: skipping 2 unreadable image file(s) of 4 under {root} (data.on_bad_image: skip; first: "
        f"cat/a_bad.png: empty file (0 bytes))"]
    assert ds.bad_files == [("cat/a_bad.png", "empty file (0 bytes)"), ("dog/c.jpg", "not a recognised image format")]
    assert len(ds) == 2 and ds.info.shape == (3, 8, 12) and ds.class_names == ["cat", "dog"]
    x, y = ds.get_batch(torch.arange(2))
    assert y.tolist() == [0, 1] and x.shape == (2, 3, 8, 12)
    listing = ds.write_bad_files(tmp_path / "run" / "bad_images.txt")
    assert listing.read_text() == "cat/a_bad.png\tempty file (0 bytes)\ndog/c.jpg\tnot a recognised image format\n"
    # the fingerprint is that of the files used: equal to a folder holding only the good files (same size, mtime)
    clean = tmp_path / "clean"
    for rel in ("cat/b.png", "dog/d.png"):
        (clean / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, clean / rel)
    assert folder(clean).fingerprint() == ds.fingerprint()


def test_skip_with_every_file_bad_is_an_error(tmp_path, private_cache):
    write(tmp_path / "a.png", b"")
    with pytest.raises(GanforgeError) as e:
        folder(tmp_path, on_bad_image="skip")
    assert one_line(e) == f"data.root: all 1 image file(s) under {tmp_path} are unreadable: " \
                          f"{tmp_path / 'a.png'} (empty file (0 bytes))"


def test_on_bad_image_must_be_error_or_skip(good_folder, private_cache):
    with pytest.raises(GanforgeError) as e:
        folder(good_folder, on_bad_image="ignore")
    assert one_line(e) == "data.on_bad_image: expected one of error, skip, got 'ignore'"
    assert not (private_cache / "verify").exists()  # refused before anything was checked or cached


def test_fingerprint_of_a_clean_folder_is_unchanged(good_folder, private_cache):
    """The formula the folder dataset used before verification existed: cached reference statistics stay valid."""
    lines = [f"{i}.png|0|{(good_folder / f'{i}.png').stat().st_size}|{(good_folder / f'{i}.png').stat().st_mtime_ns}"
             for i in range(3)]
    opts = {"resolution": None, "resize": "center-crop", "channels": 3}
    assert folder(good_folder).fingerprint() == make_fingerprint("folder", opts, "\n".join(lines))


def test_verification_is_cached_by_the_folder_listing(good_folder, private_cache, monkeypatch):
    spy = Spy(monkeypatch)
    folder(good_folder)
    assert len(spy.calls) == 1 and len(list((private_cache / "verify").glob("*.json"))) == 1
    folder(good_folder, resolution=4)  # other options, same files: a cache hit
    assert len(spy.calls) == 1
    # damage a file but keep its size and mtime: the listing (the cache key) is unchanged, so it is NOT re-checked
    victim = good_folder / "1.png"
    st = victim.stat()
    victim.write_bytes(b"\0" * st.st_size)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert len(folder(good_folder)) == 3 and len(spy.calls) == 1
    # adding a file changes the listing: everything is checked again and the damage is found
    write(good_folder / "3.png", png_bytes(3))
    with pytest.raises(GanforgeError, match=r"4 image files under .*1\.png \(not a recognised image format\)"):
        folder(good_folder)
    assert len(spy.calls) == 2 and len(spy.calls[1]) == 4
    # removing files changes it again
    (good_folder / "1.png").unlink()
    assert len(folder(good_folder)) == 3 and len(spy.calls) == 3


def test_a_cached_bad_result_is_reported_again_without_rechecking(bad_folder, private_cache, monkeypatch):
    spy = Spy(monkeypatch)
    with pytest.raises(GanforgeError) as first:
        folder(bad_folder)
    with pytest.raises(GanforgeError) as second:
        folder(bad_folder)
    assert str(second.value) == str(first.value) and len(spy.calls) == 1
    with pytest.warns(UserWarning, match="skipping 3"):
        assert folder(bad_folder, on_bad_image="skip").bad_files == BAD
    assert len(spy.calls) == 1


def test_a_damaged_cache_entry_is_checked_again(good_folder, private_cache, monkeypatch):
    spy = Spy(monkeypatch)
    folder(good_folder)
    entry = next((private_cache / "verify").glob("*.json"))
    entry.write_text("{not json")
    folder(good_folder)
    assert len(spy.calls) == 2 and entry.read_text().startswith("{")


def test_pool_and_serial_checks_agree(bad_folder, monkeypatch):
    paths = sorted(str(p) for p in bad_folder.iterdir()) * 5
    serial = V.check_files(paths, progress=False, workers=1)
    monkeypatch.setattr(V, "PARALLEL_MIN", 4)
    monkeypatch.setattr(V, "CHUNK", 3)
    assert V.check_files(paths, progress=False, workers=2) == serial
    assert [bool(r) for r in serial[:6]] == [True, True, True, False, False, False]


def test_what_the_fast_check_catches(tmp_path):
    jpg, png = jpeg_bytes(0, 64), png_bytes(0, 32, 32)
    tif = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 7).save(tif, "TIFF")
    cases = {
        "ok.jpg": (jpg, False),
        "trailing.jpg": (jpg + b"trailing bytes after the end marker", False),  # decodes fine: not reported
        "truncated.jpg": (jpg[: len(jpg) * 3 // 4], True),  # header intact, body cut: found by the tail check
        "truncated.png": (png[: len(png) - 30], True),
        "flipped.png": (png[:100] + bytes([png[100] ^ 1]) + png[101:], True),  # CRC mismatch
        "truncated.tif": (tif.getvalue()[: len(tif.getvalue()) // 2], True),
    }
    for name, (data, bad) in cases.items():
        assert bool(V.check_image(str(write(tmp_path / name, data)))) == bad, name


def test_no_process_pool_falls_back_to_serial(bad_folder, monkeypatch):
    paths = sorted(str(p) for p in bad_folder.iterdir()) * 5
    serial = V.check_files(paths, progress=False, workers=1)

    def no_pool(*a, **k):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(V, "ProcessPoolExecutor", no_pool)
    monkeypatch.setattr(V, "PARALLEL_MIN", 4)
    assert V.check_files(paths, progress=False, workers=2) == serial


def test_progress_bar_only_when_checking_takes_over_a_second(good_folder, monkeypatch, capsys):
    paths = [str(p) for p in sorted(good_folder.iterdir())]
    capsys.readouterr()
    assert V.check_files(paths, progress=True) == ["", "", ""]
    assert capsys.readouterr().err == ""  # fast: no bar
    real = V.check_many

    def slow(chunk):
        import time

        time.sleep(1.2)
        return real(chunk)

    monkeypatch.setattr(V, "check_many", slow)
    V.check_files(paths, progress=True)
    assert "verifying images" in capsys.readouterr().err
    V.check_files(paths, progress=False)
    assert capsys.readouterr().err == ""
