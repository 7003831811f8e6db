"""CIFAR-10 and CIFAR-100 from the official python archives, checksum-verified and decoded without plain pickle.

"Learning Multiple Layers of Features from Tiny Images" (Krizhevsky, 2009). The archives hold pickled dicts with
b"data" (uint8 (N, 3072), channel-major 32x32) and b"labels" (CIFAR-10) or b"fine_labels"/b"coarse_labels"
(CIFAR-100). They are read with a restricted unpickler that resolves only the numpy array-reconstruction globals,
so a tampered archive cannot run code. Decoded splits are cached as packed safetensors files next to the archive
(keyed by the archive's md5), so later loads neither verify nor unpack the archive.
"""
from __future__ import annotations

import importlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from .. import download
from ..errors import GanforgeError
from ..registries import DATASETS
from .base import DataInfo, ImageModality, TensorDataset
from .common import check_split, fingerprint
from .pack import read_packed, write_packed

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

# (module, name) pairs a CIFAR pickle may reference: numpy's array/dtype/scalar reconstruction, under the numpy 1.x
# (`numpy.core`) and 2.x (`numpy._core`) module paths. Everything else is rejected.
_ALLOWED_GLOBALS = {
    (mod, name)
    for core in ("numpy.core", "numpy._core")
    for mod, name in ((f"{core}.multiarray", "_reconstruct"), (f"{core}.multiarray", "scalar"),
                      (f"{core}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype")}


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for `_codecs.encode`, which protocol-2 pickles written by Python 3 use to store bytes; latin-1 only."""
    if encoding.replace("-", "").replace("_", "").lower() != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed in a CIFAR batch")
    return text.encode("latin-1")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the numpy globals needed to rebuild arrays; anything else is an error."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle API)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        if module.startswith("numpy.core.") and np.lib.NumpyVersion(np.__version__) >= "2.0.0":
            module = "numpy._core." + module[len("numpy.core."):]  # avoid numpy 2's deprecated alias
        elif module.startswith("numpy._core.") and np.lib.NumpyVersion(np.__version__) < "2.0.0":
            module = "numpy.core." + module[len("numpy._core."):]
        return getattr(importlib.import_module(module), name)


def restricted_loads(data: bytes) -> object:
    """Unpickle `data` (Python 2 or 3 pickles, byte strings kept as bytes) allowing only numpy array globals."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def _read_members(tar: tarfile.TarFile, wanted: set[str], archive: Path) -> dict[str, dict]:
    """Unpickled dicts of the archive members whose file names are in `wanted`, read in one pass over the tar."""
    found: dict[str, dict] = {}
    for m in tar:
        base = m.name.rsplit("/", 1)[-1]
        if not m.isfile() or base not in wanted or base in found:
            continue
        f = tar.extractfile(m)
        try:
            obj = restricted_loads(f.read() if f is not None else b"")
        except Exception as e:
            raise GanforgeError(f"data.archive: cannot decode {m.name} in {archive} ({e})") from e
        if not isinstance(obj, dict):
            raise GanforgeError(f"data.archive: {m.name} in {archive} is not a CIFAR batch (a dict)")
        found[base] = obj
    return found


def decode_cifar_archive(archive: str | Path, members: tuple[str, ...], label_key: bytes, meta_member: str,
                         names_key: bytes) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images uint8 (N, 3, 32, 32), labels int64 (N,) and class names (if the meta member has them)."""
    archive = Path(archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            found = _read_members(tar, {*members, meta_member}, archive)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise GanforgeError(f"data.archive: cannot read {archive} as a tar archive ({e})") from e
    missing = [m for m in members if m not in found]
    if missing:
        raise GanforgeError(f"data.archive: {archive} has no member {missing[0]} (not a CIFAR python archive?)")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in found.get(meta_member, {}).get(names_key, [])]
    images, labels = [], []
    for member in members:
        b = found[member]
        if b"data" not in b or label_key not in b:
            raise GanforgeError(f"data.archive: {member} in {archive} lacks b'data' or {label_key!r}")
        data = np.asarray(b[b"data"], dtype=np.uint8)
        y = np.asarray(b[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or len(y) != len(data):
            raise GanforgeError(f"data.archive: {member} in {archive} has data {data.shape} and {len(y)} labels, "
                                f"expected (N, 3072) and N labels")
        images.append(data.reshape(-1, 3, 32, 32))  # rows are R(1024) G(1024) B(1024), each row-major 32x32
        labels.append(y)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)), names


class CIFAR(TensorDataset):
    """Shared loader for the CIFAR archives; subclasses give the file layout."""

    key = ""
    default_url = ""
    default_md5 = ""
    archive_name = ""
    members = {"train": (), "test": ()}
    meta_member = ""

    def __init__(self, *, split: str, cache_dir: str | None, archive: str | None, url: str | None, md5: str | None,
                 label_key: bytes, names_key: bytes, num_classes: int):
        check_split(split, f"data ({self.key})")
        md5 = (md5 or self.default_md5).lower()
        url = url or self.default_url
        folder = (Path(cache_dir) if cache_dir else download.cache_dir()) / "datasets"
        folder.mkdir(parents=True, exist_ok=True)
        labels_tag = "" if label_key == b"labels" else label_key.decode().split("_")[0]  # "fine" / "coarse"
        decoded = folder / f"{self.key}-{md5[:12]}-{split}{'-' + labels_tag if labels_tag else ''}.safetensors"
        loaded = self._load_decoded(decoded, num_classes)
        if loaded is None:
            path = self._archive(folder, archive, url, md5)
            images, labels, names = decode_cifar_archive(path, self.members[split], label_key, self.meta_member,
                                                         names_key)
            if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
                raise GanforgeError(f"data.archive: {path} has labels outside [0, {num_classes})")
            write_packed(decoded, images, labels, num_classes=num_classes, class_names=names,
                         source=f"{self.key} {split} from {path} (md5 {md5})", fingerprint=md5)
            loaded = images, labels, names
        images, labels, names = loaded
        info = DataInfo((3, 32, 32), num_classes, ImageModality())
        opts = {"split": split, "md5": md5, "labels": labels_tag}
        super().__init__(images, labels, info, fingerprint(self.key, opts))
        self.class_names: list[str] = names

    @staticmethod
    def _load_decoded(path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
        """The cached decoded split, or None if absent or unusable (then it is rebuilt from the archive)."""
        if not path.is_file():
            return None
        try:
            images, labels, meta = read_packed(path, where="data cache")
        except GanforgeError:
            return None
        if meta["num_classes"] != num_classes or tuple(images.shape[1:]) != (3, 32, 32):
            return None
        return images, labels, meta["class_names"]

    def _archive(self, folder: Path, archive: str | None, url: str, md5: str) -> Path:
        """A verified archive: the user's local copy, else the cached/downloaded one."""
        if archive is not None:
            path = Path(archive).expanduser()
            if not path.is_file():
                raise GanforgeError(f"data.archive: {path} not found")
            download.verify_file(path, md5=md5, what="data.archive")
            return path
        hint = f"or pass data.archive=PATH to a local copy of {self.archive_name}"
        return download.fetch(url, folder / self.archive_name, md5=md5, what=f"data ({self.key})", hint=hint)


@DATASETS.register("cifar10")
class CIFAR10(CIFAR):
    """CIFAR-10: 50,000 train / 10,000 test 32x32 RGB images, 10 classes (downloaded once, md5-verified)."""

    key = "cifar10"
    default_url = CIFAR10_URL
    default_md5 = CIFAR10_MD5
    archive_name = "cifar-10-python.tar.gz"
    members = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
    meta_member = "batches.meta"

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, archive: str | None = None,
                 url: str | None = None, md5: str | None = None):
        super().__init__(split=split, cache_dir=cache_dir, archive=archive, url=url, md5=md5,
                         label_key=b"labels", names_key=b"label_names", num_classes=10)


@DATASETS.register("cifar100")
class CIFAR100(CIFAR):
    """CIFAR-100: 50,000 train / 10,000 test 32x32 RGB images, 100 fine (or 20 coarse) classes; md5-verified."""

    key = "cifar100"
    default_url = CIFAR100_URL
    default_md5 = CIFAR100_MD5
    archive_name = "cifar-100-python.tar.gz"
    members = {"train": ("train",), "test": ("test",)}
    meta_member = "meta"

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, archive: str | None = None,
                 url: str | None = None, md5: str | None = None, fine_labels: bool = True):
        kind = "fine" if fine_labels else "coarse"
        super().__init__(split=split, cache_dir=cache_dir, archive=archive, url=url, md5=md5,
                         label_key=f"{kind}_labels".encode(), names_key=f"{kind}_label_names".encode(),
                         num_classes=100 if fine_labels else 20)
