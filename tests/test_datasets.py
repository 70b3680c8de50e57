"""Finding, downloading and reading the datasets, and preprocessing; real Fashion-MNIST when installed.

Every test but the last section runs in an empty current directory, with $NETS_DATA unset, the
Debian directory pointed at a path that does not exist, and the download mirrors refusing, so the
suite passes (and never touches the network) whatever is installed on the machine.
"""

import gzip
import hashlib
import socket

import numpy
import pytest

from nets.data import datasets, download
from nets.data.datasets import (CONTENT_MD5, FILE_NAMES, DataNotFoundError, find_dataset_dir, load_dataset, to_labels,
                                to_model_input)
from nets.data.idx import DataError
from idx_files import make_dataset, serve_directory, write_dataset, write_idx

REAL_DEBIAN_DIR = datasets.DEBIAN_FASHION_MNIST_DIR  # before any test points it elsewhere


def refused_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """An empty cwd, no $NETS_DATA, no Debian dataset, no reachable mirror; yields the cwd."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("NETS_DATA", raising=False)
    monkeypatch.setenv("NETS_MIRROR", refused_url())
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian-here")
    return cwd


def assert_same_data(dataset, seed, n_train=20, n_test=10):
    arrays = make_dataset(n_train, n_test, seed=seed)
    numpy.testing.assert_array_equal(dataset.train_images, arrays["train-images-idx3-ubyte"])
    numpy.testing.assert_array_equal(dataset.train_labels, arrays["train-labels-idx1-ubyte"])
    numpy.testing.assert_array_equal(dataset.test_images, arrays["t10k-images-idx3-ubyte"])
    numpy.testing.assert_array_equal(dataset.test_labels, arrays["t10k-labels-idx1-ubyte"])


# --- the tiny dataset helper ------------------------------------------------------------------


def test_write_dataset_writes_the_four_standard_files(tmp_path):
    raw = write_dataset(tmp_path / "raw", n_train=20, n_test=10)
    packed = write_dataset(tmp_path / "packed", n_train=20, n_test=10, gzip=True)
    assert sorted(path.name for path in raw.iterdir()) == sorted(FILE_NAMES)
    assert sorted(path.name for path in packed.iterdir()) == sorted(f"{name}.gz" for name in FILE_NAMES)
    assert (packed / "train-labels-idx1-ubyte.gz").read_bytes()[:2] == b"\x1f\x8b"
    labels = make_dataset(100, 10)["train-labels-idx1-ubyte"]
    assert numpy.bincount(labels).tolist() == [10] * 10


def test_tiny_dataset_is_learnable():
    """A nearest-class-mean classifier already separates the classes: the data carries its labels."""
    arrays = make_dataset(200, 100, seed=3)
    train = arrays["train-images-idx3-ubyte"].reshape(200, -1).astype(float)
    means = numpy.stack([train[arrays["train-labels-idx1-ubyte"] == k].mean(0) for k in range(10)])
    test = arrays["t10k-images-idx3-ubyte"].reshape(100, -1).astype(float)
    predicted = numpy.argmin(((test[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == arrays["t10k-labels-idx1-ubyte"]).mean() > 0.9


# --- reading a directory ----------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gzip"])
def test_load_from_data_dir(tmp_path, compressed):
    directory = write_dataset(tmp_path / "mine", n_train=20, n_test=10, gzip=compressed, seed=4)
    dataset = load_dataset("mnist", data_dir=directory)
    assert_same_data(dataset, 4)
    assert dataset.name == "mnist" and dataset.title == "MNIST"
    assert dataset.source == str(directory) and dataset.directory == directory
    assert dataset.verified is False  # not the published release
    assert dataset.train_images.dtype == numpy.uint8 and dataset.train_images.shape == (20, 28, 28)
    assert dataset.test_labels.dtype == numpy.uint8 and dataset.test_labels.shape == (10,)
    assert dataset.image_shape == (28, 28)
    assert dataset.class_names[9] == "9"
    assert "train_images" not in repr(dataset)


def test_data_dir_may_hold_a_folder_per_dataset(tmp_path):
    write_dataset(tmp_path / "all" / "fashion-mnist", n_train=20, n_test=10, seed=5)
    dataset = load_dataset("fashion-mnist", data_dir=tmp_path / "all")
    assert dataset.directory == tmp_path / "all" / "fashion-mnist"
    assert dataset.class_names[0] == "T-shirt/top"
    assert_same_data(dataset, 5)


def test_raw_file_is_preferred_to_its_gz_twin(tmp_path):
    directory = write_dataset(tmp_path / "d", n_train=20, n_test=10, seed=1)
    write_dataset(directory, n_train=20, n_test=10, seed=2, gzip=True)
    assert_same_data(load_dataset("mnist", data_dir=directory), 1)


def test_mixed_raw_and_gzip_files(tmp_path):
    directory = write_dataset(tmp_path / "d", n_train=20, n_test=10, seed=6)
    raw = directory / "t10k-images-idx3-ubyte"
    (directory / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw.read_bytes()))
    raw.unlink()
    assert_same_data(load_dataset("mnist", data_dir=directory), 6)


def test_dotted_file_names_are_accepted(tmp_path):
    directory = write_dataset(tmp_path / "kaggle", n_train=20, n_test=10, seed=3)
    for path in list(directory.iterdir()):
        path.rename(directory / path.name.replace("-idx", ".idx"))
    assert_same_data(load_dataset("mnist", data_dir=directory), 3)


def test_explicit_data_dir_missing_files_is_an_error_naming_them(tmp_path, isolated, monkeypatch):
    # Good copies elsewhere must not be used silently.
    write_dataset(isolated / "data" / "mnist", n_train=20, n_test=10)
    monkeypatch.setenv("NETS_DATA", str(write_dataset(tmp_path / "env" / "mnist", n_train=20, n_test=10).parent))
    directory = tmp_path / "partial"
    write_dataset(directory, n_train=20, n_test=10)
    (directory / "train-labels-idx1-ubyte").unlink()
    (directory / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("mnist", data_dir=directory)
    message = str(info.value)
    assert "\n" not in message
    assert f"--data-dir {directory}" in message
    assert "train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz)" in message
    assert "train-images" not in message.split("lacks")[1].split(";")[0]
    with pytest.raises(DataNotFoundError):
        find_dataset_dir("mnist", directory)


def test_explicit_data_dir_that_does_not_exist(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_dataset("mnist", data_dir=tmp_path / "nope")


def test_malformed_file_in_a_dataset_is_a_data_error_naming_it(tmp_path):
    directory = write_dataset(tmp_path / "d", n_train=20, n_test=10)
    labels = directory / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated") as info:
        load_dataset("mnist", data_dir=directory)
    assert str(labels) in str(info.value)
    assert not isinstance(info.value, DataNotFoundError)


def test_count_mismatch_in_a_dataset(tmp_path):
    directory = write_dataset(tmp_path / "d", n_train=20, n_test=10)
    write_idx(directory / "t10k-labels-idx1-ubyte", numpy.zeros(9, dtype=numpy.uint8))
    with pytest.raises(DataError, match="10 images .* 9 labels"):
        load_dataset("mnist", data_dir=directory)


def test_label_out_of_range_in_a_dataset(tmp_path):
    directory = write_dataset(tmp_path / "d", n_train=20, n_test=10)
    write_idx(directory / "train-labels-idx1-ubyte", numpy.full(20, 10, dtype=numpy.uint8))
    with pytest.raises(DataError, match="label 10 at index 0"):
        load_dataset("mnist", data_dir=directory)


def test_train_and_test_image_sizes_must_agree(tmp_path):
    directory = write_dataset(tmp_path / "d", n_train=20, n_test=10)
    small = make_dataset(20, 10, rows=14, cols=14)
    write_idx(directory / "t10k-images-idx3-ubyte", small["t10k-images-idx3-ubyte"])
    with pytest.raises(DataError, match="28x28 but the test images are 14x14"):
        load_dataset("mnist", data_dir=directory)


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown dataset 'cifar'; choose one of mnist, fashion-mnist"):
        load_dataset("cifar")


# --- lookup order -----------------------------------------------------------------------------


def test_nets_data_comes_before_the_current_directory(tmp_path, isolated, monkeypatch):
    write_dataset(tmp_path / "env" / "mnist", n_train=20, n_test=10, seed=1)
    write_dataset(isolated / "data" / "mnist", n_train=20, n_test=10, seed=2)
    monkeypatch.setenv("NETS_DATA", str(tmp_path / "env"))
    assert find_dataset_dir("mnist") == tmp_path / "env" / "mnist"
    assert_same_data(load_dataset("mnist"), 1)


def test_current_directory_data_folder(isolated):
    write_dataset(isolated / "data" / "mnist", n_train=20, n_test=10, seed=2, gzip=True)
    assert find_dataset_dir("mnist") == isolated / "data" / "mnist"
    dataset = load_dataset("mnist", download=False)
    assert_same_data(dataset, 2)
    assert dataset.source == str(isolated / "data" / "mnist")


def test_incomplete_nets_data_folder_is_passed_over(tmp_path, isolated, monkeypatch):
    write_dataset(tmp_path / "env" / "mnist", n_train=20, n_test=10, seed=1)
    (tmp_path / "env" / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    write_dataset(isolated / "data" / "mnist", n_train=20, n_test=10, seed=2)
    monkeypatch.setenv("NETS_DATA", str(tmp_path / "env"))
    assert find_dataset_dir("mnist") == isolated / "data" / "mnist"


def test_debian_folder_comes_last_and_only_for_fashion_mnist(tmp_path, isolated, monkeypatch):
    debian = write_dataset(tmp_path / "debian", n_train=20, n_test=10, seed=7, gzip=True)
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", debian)
    assert find_dataset_dir("fashion-mnist") == debian
    assert find_dataset_dir("mnist") is None
    dataset = load_dataset("fashion-mnist", download=False)
    assert dataset.source == str(debian)
    assert_same_data(dataset, 7)
    write_dataset(isolated / "data" / "fashion-mnist", n_train=20, n_test=10, seed=8)
    assert find_dataset_dir("fashion-mnist") == isolated / "data" / "fashion-mnist"


def test_nothing_found_without_download():
    assert find_dataset_dir("mnist") is None
    assert find_dataset_dir("fashion-mnist") is None
    with pytest.raises(DataNotFoundError):
        load_dataset("mnist", download=False)


# --- the one message when nothing works -------------------------------------------------------


def not_found_message(name, **kwargs):
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(name, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for way in ("--data-dir DIR", f"$NETS_DATA/{name}", f"./data/{name}", "working network"):
        assert way in message
    return message


def test_offline_mnist_points_to_installed_fashion_mnist(tmp_path, monkeypatch):
    debian = write_dataset(tmp_path / "debian", n_train=20, n_test=10, gzip=True)
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", debian)
    message = not_found_message("mnist")
    assert "the download failed" in message
    assert f"Fashion-MNIST is installed in {debian}, so --dataset fashion-mnist works offline" in message


def test_offline_mnist_without_fashion_mnist_says_nothing_about_it():
    message = not_found_message("mnist", download=False)
    assert "downloading was turned off" in message
    assert "fashion" not in message.lower()


def test_offline_fashion_mnist_suggests_the_debian_package():
    message = not_found_message("fashion-mnist")
    assert "apt-get install dataset-fashion-mnist" in message


def test_not_found_message_names_incomplete_folders(isolated):
    write_dataset(isolated / "data" / "mnist", n_train=20, n_test=10)
    (isolated / "data" / "mnist" / "train-images-idx3-ubyte").unlink()
    message = not_found_message("mnist", download=False)
    assert f"{isolated / 'data' / 'mnist'} (incomplete: lacks train-images-idx3-ubyte(.gz))" in message


# --- downloading through load_dataset ---------------------------------------------------------


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local mirror with a tiny dataset's four .gz files, and the checksum table made to match them."""
    root = write_dataset(tmp_path / "mirror", n_train=20, n_test=10, seed=9, gzip=True)
    checksums = {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in root.iterdir()}
    monkeypatch.setitem(download.ARCHIVE_MD5, "mnist", checksums)
    with serve_directory(root) as url:
        yield url, root


def test_download_into_the_current_directory(mirror, isolated):
    url, _ = mirror
    dataset = load_dataset("mnist", mirrors=[refused_url(), url])
    target = isolated / "data" / "mnist"
    assert dataset.source == f"downloaded to {target}"
    assert sorted(path.name for path in target.iterdir()) == sorted(f"{name}.gz" for name in FILE_NAMES)
    assert_same_data(dataset, 9)
    # The next run finds it without the network.
    assert load_dataset("mnist", download=False).source == str(target)


def test_download_through_nets_mirror(mirror, monkeypatch, isolated):
    url, _ = mirror
    monkeypatch.setenv("NETS_MIRROR", url)
    assert_same_data(load_dataset("mnist"), 9)


def test_download_completes_a_partial_folder(mirror, isolated):
    url, root = mirror
    target = isolated / "data" / "mnist"
    target.mkdir(parents=True)
    (target / "train-images-idx3-ubyte.gz").write_bytes((root / "train-images-idx3-ubyte.gz").read_bytes())
    (root / "train-images-idx3-ubyte.gz").unlink()  # the mirror no longer has it: it must not be fetched
    assert_same_data(load_dataset("mnist", mirrors=[url]), 9)


def test_corrupt_download_leaves_nothing_and_says_so(mirror, isolated):
    url, root = mirror
    path = root / "t10k-images-idx3-ubyte.gz"
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("mnist", mirrors=[url])
    assert "checksum mismatch" in str(info.value)
    leftovers = [path.name for path in (isolated / "data" / "mnist").iterdir()]
    assert "t10k-images-idx3-ubyte.gz" not in leftovers
    assert not [name for name in leftovers if name.endswith(".part")]


def test_all_mirrors_failing_is_one_not_found_message(tmp_path, isolated):
    with serve_directory(tmp_path) as empty:  # serves only 404s for these names
        message = not_found_message("mnist", mirrors=[empty, refused_url()])
    assert "HTTP 404" in message
    assert not (isolated / "data").exists()


def test_explicit_data_dir_never_downloads(mirror, tmp_path, isolated):
    url, _ = mirror
    with pytest.raises(DataNotFoundError, match="--data-dir"):
        load_dataset("mnist", data_dir=tmp_path, mirrors=[url])
    assert not (isolated / "data").exists()


# --- preprocessing ----------------------------------------------------------------------------


@pytest.fixture
def uint8_images():
    images = numpy.random.default_rng(0).integers(0, 256, size=(6, 28, 28), dtype=numpy.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    return images


@pytest.mark.parametrize("dtype", ["float32", "float64", numpy.float32])
def test_model_input_of_the_mlp(uint8_images, dtype):
    x = to_model_input(uint8_images, (784,), dtype=dtype)
    assert x.shape == (6, 784) and x.dtype == numpy.dtype(dtype)
    assert x.min() == 0.0 and x.max() == 1.0
    numpy.testing.assert_allclose(x.reshape(6, 28, 28) * 255, uint8_images, atol=1e-4)


def test_model_input_of_the_cnn(uint8_images):
    x = to_model_input(uint8_images, (1, 28, 28), "float64")
    assert x.shape == (6, 1, 28, 28) and x.dtype == numpy.float64 and x.flags.c_contiguous
    numpy.testing.assert_array_equal(x[:, 0], uint8_images / 255.0)


def test_model_input_takes_any_layout_and_floats_already_scaled(uint8_images):
    expected = to_model_input(uint8_images, (1, 28, 28))
    for images in (uint8_images.reshape(6, 784), uint8_images.reshape(6, 1, 28, 28), uint8_images / numpy.float32(255)):
        numpy.testing.assert_array_equal(to_model_input(images, (1, 28, 28)), expected)
    prepared = to_model_input(uint8_images, (784,))
    assert numpy.shares_memory(to_model_input(prepared, (784,)), prepared)  # already an input: no copy


def test_model_input_refuses_what_does_not_fit(uint8_images):
    with pytest.raises(DataError, match="do not fit a model input of shape \\(784,\\); use 28x28 images"):
        to_model_input(numpy.zeros((2, 10, 10), dtype=numpy.uint8), (784,))
    with pytest.raises(DataError, match="give uint8 pixels"):
        to_model_input(uint8_images.astype(numpy.int32), (784,))
    with pytest.raises(ValueError, match="floating dtype"):
        to_model_input(uint8_images, (784,), dtype="int32")


def test_to_labels_gives_int64():
    labels = to_labels(numpy.array([0, 9, 3], dtype=numpy.uint8))
    assert labels.dtype == numpy.int64 and labels.tolist() == [0, 9, 3]
    with pytest.raises(ValueError):
        to_labels(numpy.zeros((2, 2), dtype=numpy.uint8))


# --- the real Fashion-MNIST, when Debian's package is installed -------------------------------

needs_fashion_mnist = pytest.mark.skipif(
    not REAL_DEBIAN_DIR.is_dir(),
    reason=f"{REAL_DEBIAN_DIR} is absent; `apt-get install dataset-fashion-mnist` to run this check",
)


@needs_fashion_mnist
def test_real_fashion_mnist_loads(monkeypatch):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", REAL_DEBIAN_DIR)
    dataset = load_dataset("fashion-mnist", download=False)
    assert dataset.source == str(REAL_DEBIAN_DIR)
    assert dataset.train_images.shape == (60000, 28, 28) and dataset.train_images.dtype == numpy.uint8
    assert dataset.train_labels.shape == (60000,) and dataset.test_labels.shape == (10000,)
    assert dataset.test_images.shape == (10000, 28, 28)
    assert set(numpy.unique(dataset.train_labels)) == set(range(10))
    assert numpy.bincount(dataset.test_labels).tolist() == [1000] * 10
    assert dataset.verified


@needs_fashion_mnist
def test_debian_files_hold_the_published_fashion_mnist():
    """Debian recompressed the .gz files, so their MD5 differs from the published archive MD5
    (download.ARCHIVE_MD5, which still checks downloads); the decompressed bytes match the
    published content MD5 exactly."""
    for name in FILE_NAMES:
        content = gzip.decompress((REAL_DEBIAN_DIR / f"{name}.gz").read_bytes())
        assert hashlib.md5(content).hexdigest() == CONTENT_MD5["fashion-mnist"][name], name
