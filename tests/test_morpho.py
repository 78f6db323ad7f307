"""Morpho-MNIST morphometrics (mtlab.data.morpho) on synthetic strokes of known shape and on real MNIST digits.

The synthetic strokes are anti-aliased like MNIST's (each pixel's grey level is the stroke's coverage of it, sampled
8 x 8), centred in a 28 x 28 image: an upright or sheared bar, a capsule (a segment thickened into a stroke with round
ends; its centre line is the segment) and a rectangle.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from mtlab.data.idx import read_idx
from mtlab.data.morpho import MEASURES, measure_image, measure_images
from mtlab.errors import DataError

needs_skimage = pytest.mark.skipif(
    importlib.util.find_spec("skimage") is None, reason="scikit-image is not installed (pip install 'mtlab[morpho]')"
)

SIZE = 28
MNIST_SAMPLE = Path(__file__).resolve().parents[1] / "src" / "mtlab" / "embedded" / "mnist-sample"


def render(inside, supersample: int = 8) -> np.ndarray:
    """A 28 x 28 uint8 image whose pixels are 255 x the fraction of their area where ``inside(x, y)`` holds (x to
    the right, y down, in pixels from the image's top-left corner)."""
    grid = (np.arange(SIZE * supersample) + 0.5) / supersample
    y, x = np.meshgrid(grid, grid, indexing="ij")
    coverage = inside(x, y).reshape(SIZE, supersample, SIZE, supersample).mean(axis=(1, 3))
    return np.round(255 * coverage).astype(np.uint8)


def bar(thickness: float, length: float = 20, slant_degrees: float = 0.0) -> np.ndarray:
    """A bar of ``thickness`` x ``length`` pixels, upright, then sheared horizontally so that its top moves right
    for a positive slant (Castro et al.'s sign convention)."""
    c, shear = SIZE / 2, math.tan(math.radians(slant_degrees))
    return render(lambda x, y: (np.abs(x - c - shear * (c - y)) <= thickness / 2) & (np.abs(y - c) <= length / 2))


def capsule(thickness: float, length: float, degrees: float = 0.0) -> np.ndarray:
    """The points within ``thickness / 2`` of a segment of ``length`` through the centre, turned ``degrees``
    clockwise from upright."""
    dx, dy = math.sin(math.radians(degrees)), -math.cos(math.radians(degrees))

    def inside(x, y):
        px, py = x - SIZE / 2, y - SIZE / 2
        along = np.clip(px * dx + py * dy, -length / 2, length / 2)
        return np.hypot(px - along * dx, py - along * dy) <= thickness / 2

    return render(inside)


def rectangle(width: float, height: float) -> np.ndarray:
    return render(lambda x, y: (np.abs(x - SIZE / 2) <= width / 2) & (np.abs(y - SIZE / 2) <= height / 2))


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return read_idx(MNIST_SAMPLE / "t10k-images-idx3-ubyte.gz")


# --- known shapes ------------------------------------------------------------------------------------------------


@needs_skimage
@pytest.mark.parametrize("thickness", [2, 3, 4, 5])
def test_thickness_of_an_upright_bar(thickness):
    assert measure_image(bar(thickness))["thickness"] == pytest.approx(thickness, abs=0.5)


@needs_skimage
@pytest.mark.parametrize("thickness", [2, 3, 4])
@pytest.mark.parametrize("degrees", [0, 45, 90])
def test_thickness_does_not_depend_on_the_stroke_direction(thickness, degrees):
    assert measure_image(capsule(thickness, 16, degrees))["thickness"] == pytest.approx(thickness, abs=0.5)


@needs_skimage
@pytest.mark.parametrize("slant", [-30, -15, 0, 15, 30])
def test_slant_of_a_sheared_bar_in_radians_positive_leaning_right(slant):
    measured = measure_image(bar(3, slant_degrees=slant))["slant"]
    assert measured == pytest.approx(math.radians(slant), abs=math.radians(2))
    assert np.sign(measured) == np.sign(slant)


@needs_skimage
@pytest.mark.parametrize("slant", [-30, 15, 30])
def test_width_and_height_are_measured_after_removing_the_slant(slant):
    upright, sheared = measure_image(bar(3)), measure_image(bar(3, slant_degrees=slant))
    assert sheared["width"] == pytest.approx(upright["width"], abs=0.5)  # not the sheared bar's bounding box
    assert sheared["height"] == pytest.approx(upright["height"], abs=0.5)
    assert upright["height"] == pytest.approx(20, abs=1)


@needs_skimage
@pytest.mark.parametrize("degrees", [0, 30, 45, 60, 90, 135])
def test_length_is_the_stroke_centre_line(degrees):
    # The medial axis adds short forks at the round ends of a stroke (up to ~2.5 px on these): 10 % + 1 px.
    lengths = {n: measure_image(capsule(3, n, degrees))["length"] for n in (12, 20)}
    for n, measured in lengths.items():
        assert abs(measured - n) <= 0.1 * n + 1, (n, measured)
    assert lengths[20] - lengths[12] == pytest.approx(8, abs=1.5)  # the ends cancel


@needs_skimage
def test_width_height_and_area_of_a_rectangle():
    measured = measure_image(rectangle(12, 16))
    assert measured["width"] == pytest.approx(12, abs=1)
    assert measured["height"] == pytest.approx(16, abs=1)
    assert measured["area"] == pytest.approx(12 * 16, rel=0.02)
    assert measured["slant"] == pytest.approx(0, abs=1e-9)


@needs_skimage
@pytest.mark.parametrize("thickness", [2, 3, 5])
def test_area_of_a_bar(thickness):
    assert measure_image(bar(thickness))["area"] == pytest.approx(20 * thickness, rel=0.03)


@needs_skimage
@pytest.mark.parametrize("value", [0, 255])
def test_an_image_with_no_stroke_gives_nan(value):
    measured = measure_image(np.full((SIZE, SIZE), value, np.uint8))
    assert list(measured) == list(MEASURES)
    assert all(math.isnan(v) for v in measured.values())


# --- batches -------------------------------------------------------------------------------------------------------


@needs_skimage
def test_measure_images_is_measure_image_per_image(digits):
    images = np.concatenate([digits[:8], np.zeros((1, SIZE, SIZE), np.uint8), bar(3)[None]])
    batch = measure_images(images, workers=1)
    assert batch.shape == (10, len(MEASURES))
    assert batch.dtype == np.float64
    expected = np.array([[measure_image(image)[name] for name in MEASURES] for image in images])
    np.testing.assert_array_equal(batch, expected)
    assert np.isnan(batch[8]).all()
    assert np.isfinite(np.delete(batch, 8, axis=0)).all()
    assert measure_images(images[:0]).shape == (0, len(MEASURES))


@needs_skimage
def test_parallel_equals_serial(digits):
    images = digits[:40]
    serial = measure_images(images, workers=1)
    np.testing.assert_array_equal(measure_images(images, workers=2, chunk_size=15), serial)


@needs_skimage
def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        measure_image(np.zeros((2, SIZE, SIZE), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        measure_image(np.zeros((SIZE, SIZE), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        measure_images(np.zeros((SIZE, SIZE), np.uint8))


def test_missing_scikit_image_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # makes `import skimage` fail
    with pytest.raises(DataError, match=r"pip install 'mtlab\[morpho\]'"):
        measure_image(bar(3))
    with pytest.raises(DataError, match="scikit-image"):
        measure_images(bar(3)[None])


# --- real digits and the reference procedure ----------------------------------------------------------------------


@needs_skimage
def test_real_mnist_digits_are_in_the_papers_ranges(digits):
    measured = dict(zip(MEASURES, measure_images(digits[:200], workers=1).T, strict=True))
    assert all(np.isfinite(values).all() for values in measured.values())
    # Castro et al., fig. 3 (MNIST): thickness peaks at 2-3 px, slant within about +-45 degrees, ...
    assert 2 <= measured["thickness"].mean() <= 4
    assert (measured["thickness"] > 0.5).all()
    assert (measured["thickness"] < 8).all()
    assert abs(measured["slant"].mean()) < 0.3
    assert (np.abs(measured["slant"]) < math.radians(60)).all()
    assert 8 <= measured["width"].mean() <= 18
    assert (measured["width"] <= SIZE).all()
    assert 15 <= measured["height"].mean() <= 22
    assert (measured["height"] <= SIZE).all()
    assert 60 <= measured["area"].mean() <= 160
    assert 25 <= measured["length"].mean() <= 70


@needs_skimage
def test_fast_medial_axis_is_scikit_images(digits):
    """mtlab's medial axis (lookup tables built once) is skimage.morphology.medial_axis(rng=42), pixel for pixel,
    on the binarised upscaled digits the measures use and on shapes touching the image border."""
    from skimage import morphology, transform

    from mtlab.data.morpho import SKELETON_SEED, _medial_axis

    shapes = []
    for image in digits[:15]:
        hires = (255.0 * transform.pyramid_expand(image, upscale=4, order=3, channel_axis=None)).astype(np.uint8)
        shapes.append(hires >= hires.max() / 2)
    border = np.zeros((20, 24), bool)
    border[:7, :] = True
    border[:, -5:] = True
    shapes += [border, np.ones((9, 9), bool)]
    for shape in shapes:
        skeleton, distance = _medial_axis(morphology, shape)
        expected_skeleton, expected_distance = morphology.medial_axis(shape, return_distance=True, rng=SKELETON_SEED)
        np.testing.assert_array_equal(skeleton, expected_skeleton)
        np.testing.assert_array_equal(distance, expected_distance)
