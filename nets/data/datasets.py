"""Where the MNIST-style datasets are found or downloaded, and turning their bytes into float arrays.

    dataset = load_dataset("mnist")                     # or "fashion-mnist"; data_dir=... for --data-dir
    x = to_model_input(dataset.train_images, (1, 28, 28))   # (N, 1, 28, 28) float32 in [0, 1], on the host
    y = to_labels(dataset.train_labels)                  # (N,) int64
    x, y = backend.asarray(x), backend.asarray(y)        # move to the device once per run

A dataset directory holds the four standard files, each raw or gzipped:
train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte.

Lookup order for a dataset name:
  1. `data_dir` (the CLI's --data-dir): the files in it, or in data_dir/<name>; if absent, an error
     (nothing else is searched);
  2. $NETS_DATA/<name>, then ./data/<name> (relative to the current directory);
  3. for fashion-mnist, Debian's DEBIAN_FASHION_MNIST_DIR (package dataset-fashion-mnist);
  4. a download from the public mirrors into ./data/<name> (see nets.data.download).
When all of these fail, DataNotFoundError says, in one line, the ways to get the data.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy

from nets.data import download as download_module
from nets.data.checksums import CONTENT_MD5, published_files, remembered_md5
from nets.data.idx import DataError, check_counts, check_labels, parse_idx, read_idx_bytes

__all__ = [
    "CLASS_NAMES",
    "CONTENT_MD5",
    "DATA_ENV",
    "DATASET_NAMES",
    "DEBIAN_FASHION_MNIST_DIR",
    "FILE_NAMES",
    "TITLES",
    "DataError",
    "DataNotFoundError",
    "Dataset",
    "dataset_files",
    "find_dataset_dir",
    "load_dataset",
    "named_by_content",
    "require_examples",
    "search_dirs",
    "to_model_input",
    "to_labels",
]

DATASET_NAMES = ("mnist", "fashion-mnist")
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DATA_ENV = "NETS_DATA"
DEFAULT_DATA_DIR = Path("data")  # relative to the current directory when looked up
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
NUM_CLASSES = 10

CLASS_NAMES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}

class DataNotFoundError(DataError):
    """A dataset is in none of the places searched and could not be downloaded; the message says how to get it."""


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: uint8 images and labels, as in the files.

    train_images: (N_train, rows, cols) uint8; train_labels: (N_train,) uint8 in 0..9;
    test_images: (N_test, rows, cols) uint8; test_labels: (N_test,) uint8 in 0..9.
    name: "mnist" or "fashion-mnist"; source: where it came from, for logs (a directory, or
    "downloaded to DIR"); directory: the directory read; verified: True when all four files are,
    once decompressed, byte-identical to the published release (False for other data in that layout);
    release: the published dataset whose four files these are, told by checksum whatever name they were read
    under (None for other data); checksums: {file name: MD5 of its decompressed content} of the four files.
    """

    name: str
    train_images: numpy.ndarray = field(repr=False)
    train_labels: numpy.ndarray = field(repr=False)
    test_images: numpy.ndarray = field(repr=False)
    test_labels: numpy.ndarray = field(repr=False)
    source: str
    directory: Path
    verified: bool = False
    release: str | None = None
    checksums: dict = field(default_factory=dict, repr=False)

    @property
    def title(self) -> str:
        """The dataset's usual spelling, e.g. "Fashion-MNIST"."""
        return TITLES[self.name]

    @property
    def class_names(self) -> tuple[str, ...]:
        """The ten class names, indexed by label."""
        return CLASS_NAMES[self.name]

    @property
    def image_shape(self) -> tuple[int, int]:
        """(rows, cols) of every image."""
        return tuple(self.train_images.shape[1:])


def check_name(name: str) -> str:
    """Return `name` when it is a known dataset, else raise DataError listing the choices."""
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}.")
    return name


def dataset_files(directory) -> tuple[dict[str, Path], list[str]]:
    """The standard files present in `directory`: -> ({file name: path}, [missing file names]).

    For each of FILE_NAMES the raw file is preferred to NAME.gz when both are present; the spelling with a
    dot before "idx" (train-images.idx3-ubyte, as some copies such as Kaggle's have it) is accepted too.
    """
    directory = Path(directory)
    found, missing = {}, []
    for file_name in FILE_NAMES:
        dotted = file_name.replace("-idx", ".idx")
        spellings = (file_name, f"{file_name}.gz", dotted, f"{dotted}.gz")
        for candidate in (directory / spelling for spelling in spellings):
            if candidate.is_file():
                found[file_name] = candidate
                break
        else:
            missing.append(file_name)
    return found, missing


def search_dirs(name: str) -> list[Path]:
    """The directories searched for `name` when no data_dir is given, in order (steps 2 and 3)."""
    check_name(name)
    dirs = []
    env_dir = os.environ.get(DATA_ENV, "").strip()
    if env_dir:
        dirs.append(Path(env_dir).expanduser() / name)
    dirs.append(Path.cwd() / DEFAULT_DATA_DIR / name)
    if name == "fashion-mnist":
        dirs.append(Path(DEBIAN_FASHION_MNIST_DIR))
    return dirs


def _missing_text(missing) -> str:
    return ", ".join(f"{file_name}(.gz)" for file_name in missing)


def _explicit_dir(name: str, data_dir) -> Path:
    """The directory with the files under an explicit data_dir, or DataNotFoundError naming what is missing."""
    data_dir = Path(data_dir).expanduser()
    advice = (
        f"put the four IDX files (gzipped or not) there, or leave out --data-dir to use "
        f"$NETS_DATA/{name}, ./data/{name} or a download."
    )
    if not data_dir.is_dir():
        raise DataNotFoundError(f"--data-dir {data_dir} does not exist or is not a directory; {advice}")
    for directory in (data_dir, data_dir / name):
        _require_listable(directory)
    best_missing = None
    for directory in (data_dir, data_dir / name):
        found, missing = dataset_files(directory)
        if not missing:
            return directory
        if best_missing is None or len(missing) < len(best_missing[1]):
            best_missing = (directory, missing)
    directory, missing = best_missing
    raise DataNotFoundError(
        f"--data-dir {data_dir} does not hold the {TITLES[name]} files: {directory} lacks {_missing_text(missing)}; "
        f"{advice}"
    )


def _require_listable(directory: Path) -> None:
    """DataError when the folder `directory` is there but cannot be read (its files would seem absent)."""
    try:
        os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as error:
        raise DataError(f"the folder {directory} cannot be read ({error.strerror or error}); check its permissions, "
                        "or pass another --data-dir.") from None


def find_dataset_dir(name: str, data_dir=None) -> Path | None:
    """The directory holding all four files of dataset `name` without downloading, or None.

    With data_dir (the CLI's --data-dir) only data_dir and data_dir/<name> are searched, and a
    DataNotFoundError naming the missing files is raised when neither holds them.
    Without it: $NETS_DATA/<name>, ./data/<name>, then (fashion-mnist) DEBIAN_FASHION_MNIST_DIR.
    """
    check_name(name)
    if data_dir is not None:
        return _explicit_dir(name, data_dir)
    for directory in search_dirs(name):
        if not dataset_files(directory)[1]:
            return directory
    return None


def _not_found_message(name: str, download_failure: str | None) -> str:
    """The one line that tells the user every way to get dataset `name`."""
    title = TITLES[name]
    places = []
    for directory in search_dirs(name):
        found, missing = dataset_files(directory)
        if found:
            places.append(f"{directory} (incomplete: lacks {_missing_text(missing)})")
        else:
            places.append(str(directory))
    if download_failure is None:
        how = "downloading was turned off"
    else:
        how = f"the download failed ({download_failure.rstrip('.')})"
    message = (
        f"{title} was not found in {', '.join(places)}, and {how}. To get it: pass --data-dir DIR with the four IDX "
        f"files ({', '.join(FILE_NAMES)}, gzipped or not), put them in $NETS_DATA/{name} or ./data/{name}, "
        f"or run again with a working network to download them into ./data/{name}."
    )
    if name != "fashion-mnist":
        fashion_dir = find_dataset_dir("fashion-mnist")
        if fashion_dir is not None:
            message += f" Fashion-MNIST is installed in {fashion_dir}, so --dataset fashion-mnist works offline."
    elif not dataset_files(DEBIAN_FASHION_MNIST_DIR)[0]:
        message += (
            f" On Debian or Ubuntu, `apt-get install {DEBIAN_PACKAGE}` installs it in {DEBIAN_FASHION_MNIST_DIR}."
        )
    return message


def _read_directory(name: str, directory: Path, source: str) -> Dataset:
    """Read and check the four files in `directory`."""
    found, missing = dataset_files(directory)
    if missing:
        raise DataNotFoundError(f"{directory} lacks {_missing_text(missing)}; put the missing files there.")
    blobs = {file_name: read_idx_bytes(path, ndim=3 if "images" in file_name else 1)
             for file_name, path in found.items()}
    # hashed once per file and remembered by its size and modification time (nets/data/checksums.py)
    digests = {file_name: remembered_md5(found[file_name], blobs[file_name]) for file_name in FILE_NAMES}
    release = next((known for known, published in CONTENT_MD5.items() if digests == published), None)
    if release is None:
        _refuse_mixed_releases(directory, found, digests)
    arrays = {}
    for split in ("train", "t10k"):
        images_name, labels_name = f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"
        images = parse_idx(blobs.pop(images_name), found[images_name], ndim=3)
        labels = check_labels(parse_idx(blobs.pop(labels_name), found[labels_name], ndim=1), found[labels_name])
        check_counts(images, labels, found[images_name], found[labels_name])
        arrays[split] = (images, labels)
    train_shape, test_shape = arrays["train"][0].shape[1:], arrays["t10k"][0].shape[1:]
    if train_shape != test_shape:
        raise DataError(
            f"{directory}: the training images are {train_shape[0]}x{train_shape[1]} but the test images are "
            f"{test_shape[0]}x{test_shape[1]}; the files come from different datasets, so replace them with one set."
        )
    return Dataset(
        name=name,
        train_images=arrays["train"][0],
        train_labels=arrays["train"][1],
        test_images=arrays["t10k"][0],
        test_labels=arrays["t10k"][1],
        source=source,
        directory=directory,
        verified=release == name,
        release=release,
        checksums=digests,
    )


def _refuse_mixed_releases(directory: Path, found: dict, digests: dict) -> None:
    """DataError, one line naming the files, when the four files come from two published datasets (Fashion-MNIST's
    training files beside MNIST's test files): trained together they would be neither."""
    releases = published_files(digests)
    if len(releases) > 1:
        parts = "; ".join(f"{', '.join(found[name].name for name in names)} {'is' if len(names) == 1 else 'are'} "
                          f"{TITLES[release]}'s" for release, names in releases.items())
        raise DataError(f"{directory} mixes the files of two datasets ({parts}, by their published checksums); put "
                        "each dataset's four files in a folder of its own.")


def load_dataset(name: str, data_dir=None, download: bool = True, *, mirrors=None) -> Dataset:
    """Find (or download) and read dataset `name` ("mnist" or "fashion-mnist").

    data_dir: the CLI's --data-dir; when given, nothing else is searched and nothing is downloaded.
    download: when False, step 4 (the download) is skipped.
    mirrors: base URLs for the download (default: $NETS_MIRROR, else nets.data.download.MIRRORS[name]).
    Raises DataNotFoundError (one line, naming every way to get the data) when the dataset is
    nowhere and cannot be downloaded, and DataError when a file is malformed.
    """
    check_name(name)
    directory = find_dataset_dir(name, data_dir)
    if directory is not None:
        return _read_directory(name, directory, source=str(directory))
    if not download:
        raise DataNotFoundError(_not_found_message(name, None))
    target = Path.cwd() / DEFAULT_DATA_DIR / name
    missing = dataset_files(target)[1]
    published = download_module.ARCHIVE_MD5[name]
    checksums = {f"{file_name}.gz": published[f"{file_name}.gz"] for file_name in missing}  # keep files present
    try:
        download_module.download_dataset(name, target, mirrors=mirrors, checksums=checksums)
    except download_module.DownloadError as error:
        raise DataNotFoundError(_not_found_message(name, str(error))) from error
    return _read_directory(name, target, source=f"downloaded to {target}")


def named_by_content(dataset: Dataset, chosen: str | None = None, advice: str | None = None,
                     using: str = "name and classes") -> tuple[Dataset, str | None]:
    """The dataset named after the published release its files are (by checksum), when it was read under the other
    name: -> (renamed dataset, a line saying so), else (dataset, None). chosen: who named it, when the user did
    ("--dataset mnist"); then the files contradict them, and DataError says so in one line, ending in `advice`."""
    release = dataset.release
    if release is None or release == dataset.name:
        return dataset, None
    what = (f"the files in {dataset.directory} are {TITLES[release]} (they match its published checksums), not "
            f"{TITLES[dataset.name]}")
    if chosen is not None:
        raise DataError(f"{what} as {chosen} says; {advice or f'leave out --dataset, or give --dataset {release}'}.")
    return replace(dataset, name=release, verified=True), f"note: {what}: using {TITLES[release]}'s {using}."


SPLIT_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}


def require_examples(dataset: Dataset, splits=("train", "test"), purpose: str = "this") -> None:
    """Raise DataError, naming the file, when a split ("train", "test") of `dataset` holds no images."""
    for split in splits:
        images = dataset.train_images if split == "train" else dataset.test_images
        if len(images) == 0:
            found = dataset_files(dataset.directory)[0]
            where = found.get(SPLIT_FILES[split], Path(dataset.directory) / SPLIT_FILES[split])
            raise DataError(f"{where} holds no images (its header declares 0), and {purpose} needs {split} images; "
                            f"use complete {TITLES[dataset.name]} files.")


def to_model_input(images, input_shape, dtype="float32") -> numpy.ndarray:
    """Images -> a model's input, on the host: (N, *input_shape) of `dtype`, pixels in [0, 1].

    The one preparation of inputs: a training run makes the whole dataset so before moving it to the device
    once, evaluation and prediction each batch (nets/nn/inference.py).
    images: any layout with prod(input_shape) pixels per image ((N, 28, 28) as read from the IDX files, (N, 784),
        (N, 1, 28, 28)); uint8 0..255 (divided by 255, in `dtype`) or floats already in [0, 1].
    input_shape: one example as the model takes it ((784,) for the MLP, (1, 28, 28) for the CNN).
    DataError, one line, for images that do not fit; ValueError for a dtype that is not floating.
    """
    images = numpy.asarray(images)
    dtype = numpy.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"a model input needs a floating dtype such as float32 or float64, got {dtype}.")
    count = images.shape[0] if images.ndim else 0
    if images.ndim < 2 or images.size != count * math.prod(input_shape):
        raise DataError(f"images of shape {images.shape} do not fit a model input of shape {tuple(input_shape)}; "
                        "use 28x28 images.")
    if images.dtype == numpy.uint8:
        pixels = numpy.divide(images, dtype.type(255), dtype=dtype)
    elif images.dtype.kind == "f":
        pixels = images.astype(dtype, copy=False)
    else:
        raise DataError(f"images of dtype {images.dtype}; give uint8 pixels (0..255) or floats in [0, 1].")
    return pixels.reshape(count, *input_shape)


def to_labels(labels: numpy.ndarray) -> numpy.ndarray:
    """uint8 labels (N,) -> int64 labels (N,), on the host (int64 indexes safely on NumPy and CuPy)."""
    labels = numpy.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"to_labels expects integer labels of shape (N,), got {labels.dtype} {labels.shape}.")
    return labels.astype(numpy.int64)
