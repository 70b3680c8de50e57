"""Augmentation (nets/data/augment.py and its ImageMoves in the engines' batches): names, pixel maps, borders,
draws, launches, resume."""

import numpy
import pytest

from nets.data.augment import AUTO, Augmentation, AugmentError, ImageMoves, resolve
from nets.train.engine import NetsEngine
from nets.nn.models import build_model
from nets.optim import Adam


def reference(image, flip, dy, dx):
    """image (H, W) mirrored left-right when flip, then moved dy down and dx right; 0 where nothing lands."""
    source = image[:, ::-1] if flip else image
    rows, cols = image.shape
    moved = numpy.zeros_like(image)
    moved[max(dy, 0):rows + min(dy, 0), max(dx, 0):cols + min(dx, 0)] = (
        source[max(-dy, 0):rows - max(dy, 0), max(-dx, 0):cols - max(dx, 0)])
    return moved


def map_id(augmentation, flip, dy, dx):
    side = 2 * augmentation.shift + 1
    return flip * side * side + (dy + augmentation.shift) * side + (dx + augmentation.shift)


@pytest.mark.parametrize("text, flip, shift, name", [
    ("none", False, 0, "none"), ("flip", True, 0, "flip"), ("shift", False, 2, "shift:2"),
    ("shift:3", False, 3, "shift:3"), ("flip+shift", True, 2, "flip+shift:2"),
    ("shift:1+flip", True, 1, "flip+shift:1"),
])
def test_names_parse_to_one_canonical_spelling(text, flip, shift, name):
    augmentation = Augmentation.parse(text)
    assert (augmentation.flip, augmentation.shift, augmentation.name) == (flip, shift, name)
    assert Augmentation.parse(augmentation.name) == augmentation


@pytest.mark.parametrize("text", ["shift:0", "shift:9", "shift:-1", "flip+flip", "shift+shift:2", "rotate", "auto",
                                  "", "flip+", 3])
def test_unreadable_names_are_refused_listing_the_choices(text):
    with pytest.raises(AugmentError, match="shift must be 1 to 8|choose one of none, flip, shift"):
        Augmentation.parse(text)


def test_auto_shifts_digits_flips_and_shifts_the_cnn_on_clothes_and_leaves_the_mlp_there_plain():
    assert resolve("auto", "mnist", "cnn") == resolve("auto", "mnist", "mlp") == "shift:2"
    assert resolve("auto", "fashion-mnist", "cnn") == "flip+shift:1"
    assert resolve("auto", "fashion-mnist", "mlp") == "none"
    assert resolve("flip+shift", "mnist", "mlp") == "flip+shift:2"  # anything explicit is kept
    assert set(AUTO) == {(d, m) for d in ("mnist", "fashion-mnist") for m in ("mlp", "cnn")}


@pytest.mark.parametrize("text", ["flip", "shift:2", "flip+shift:1"])
def test_every_pixel_map_is_the_flip_and_shift_it_names_with_zeros_shifted_in(text):
    augmentation = Augmentation.parse(text)
    image = numpy.arange(1, 5 * 7 + 1, dtype=numpy.float64).reshape(5, 7)  # no zero pixel of its own
    tables = augmentation.tables(image.shape)
    assert tables.shape == (augmentation.count, 35) and tables.dtype == numpy.int64
    assert tables.min() >= 0 and tables.max() <= 35
    padded = numpy.append(image.ravel(), 0.0)
    offsets = range(-augmentation.shift, augmentation.shift + 1)
    for flip in ((0, 1) if augmentation.flip else (0,)):
        for dy in offsets:
            for dx in offsets:
                moved = padded[tables[map_id(augmentation, flip, dy, dx)]].reshape(image.shape)
                numpy.testing.assert_array_equal(moved, reference(image, flip, dy, dx), err_msg=f"{flip} {dy} {dx}")
                # exactly the rows and columns moved out of the picture are 0
                assert (moved == 0).sum() == 35 - (5 - abs(dy)) * (7 - abs(dx))


def test_draws_come_from_the_runs_rng_and_cover_every_move():
    augmentation = Augmentation.parse("flip+shift:2")
    first = augmentation.draw(numpy.random.default_rng(5), 20000)
    numpy.testing.assert_array_equal(first, augmentation.draw(numpy.random.default_rng(5), 20000))
    assert not numpy.array_equal(first, augmentation.draw(numpy.random.default_rng(6), 20000))
    counts = numpy.bincount(first, minlength=augmentation.count)
    assert len(counts) == 50 and counts.min() > 300  # uniform over 2 flips x 5 x 5 shifts: 400 each
    # a flip-only run draws what flip runs always drew, so their results and checkpoints carry on unchanged
    flips = Augmentation.parse("flip").draw(numpy.random.default_rng(7), 1000)
    numpy.testing.assert_array_equal(flips, numpy.random.default_rng(7).random(1000) < 0.5)


def engine_on(backend, model_name, workers=1):
    model = build_model(model_name, backend=backend, rng=numpy.random.default_rng(0))
    return NetsEngine(model, Adam(model.parameters()), backend, workers=workers)


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_the_engine_moves_each_image_in_place_in_the_steps_buffers(backend, model_name):
    augmentation = Augmentation.parse("flip+shift:2")
    engine = engine_on(backend, model_name)
    moves = ImageMoves(engine.backend, augmentation.tables((28, 28)), "float32")
    rng = numpy.random.default_rng(3)
    host = (rng.random((6, 28, 28)) + 0.5).astype(numpy.float32)  # no zero pixel of its own
    images = backend.asarray(host.reshape(6, *engine.model.input_shape))
    flips_and_shifts = [(0, 0, 0), (1, 0, 0), (0, 2, -1), (1, -2, 2), (0, -1, 0), (1, 1, 1)]  # of images 0..5
    moves.epoch(numpy.array([map_id(augmentation, *move) for move in flips_and_shifts]))
    order = numpy.array([3, 0, 5, 1, 4, 2])  # the batch: each image keeps its own move
    for _ in range(2):  # the second time through the buffers made the first time
        index = backend.asarray(order)
        moved, _ = engine.batch(images, backend.asarray(numpy.arange(6)), index, moves)
        pictures = backend.to_numpy(moved).reshape(6, -1)[:, :784].reshape(6, 28, 28)
        for k, image in enumerate(order):
            expected = reference(host[image], *flips_and_shifts[image])
            numpy.testing.assert_array_equal(pictures[k], expected, err_msg=str(k))
    if model_name == "mlp":  # the input_with_ones' column of ones (the bias) is untouched
        numpy.testing.assert_array_equal(backend.to_numpy(moved)[:, -1], 1)


def test_torch_engine_moves_images_as_the_nets_do():
    torch = pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
    import backend as backend_module
    from nets.baseline.engine import TorchEngine

    cpu = backend_module.get_backend("cpu")
    nets = engine_on(cpu, "cnn")
    engine = TorchEngine(nets.model_config, optimizer="adam")
    augmentation = Augmentation.parse("flip+shift:3")
    host = numpy.random.default_rng(4).random((5, 1, 28, 28)).astype(numpy.float32)
    ids = augmentation.draw(numpy.random.default_rng(0), 5)
    order = numpy.array([3, 0, 4, 1, 2])
    batches = []
    for each in (nets, engine):
        moves = ImageMoves(each.backend, augmentation.tables((28, 28)), "float32")
        moves.epoch(ids)
        backend = each.backend
        x, _ = each.batch(backend.asarray(host), backend.asarray(numpy.arange(5)), backend.asarray(order), moves)
        batches.append(backend.to_numpy(x))
    assert isinstance(x, torch.Tensor)
    numpy.testing.assert_array_equal(batches[1], batches[0])


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_augmenting_a_batch_is_five_launches_with_no_sync_or_copy(standin_gpu, model_name):
    """The batch's maps, their offsets, the pixels into the workspace, the gather back; nothing allocated."""
    augmentation = Augmentation.parse("flip+shift:2")
    engine = engine_on(standin_gpu, model_name)
    moves = ImageMoves(engine.backend, augmentation.tables((28, 28)), "float32")
    rng = numpy.random.default_rng(0)
    images = standin_gpu.asarray(rng.random((256, *engine.model.input_shape), dtype=numpy.float32))
    labels = standin_gpu.asarray(rng.integers(0, 10, 256))
    moves.epoch(augmentation.draw(rng, 256))
    index = standin_gpu.asarray(numpy.arange(128))
    for _ in range(2):  # the first batch makes the buffers
        counter = standin_gpu.xp.counter
        mark = counter.mark()
        engine.batch(images, labels, index, moves)
        tally = counter.since(mark)
    assert tally.launches == 2 + 5, tally.by_site()  # the batch's two gathers, then the moves
    assert tally.syncs == 0 and tally.transfers == 0 and tally.memsets == 0
    assert not tally.where("alloc"), [event.name for event in tally.where("alloc")]
