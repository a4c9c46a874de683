"""Contract tests for every CIFAR-10-C corruption (shape, dtype, seeding,
severity and input errors) and brute-force checks of the shared image ops in
``study.corruptions._ops``. Fidelity against the reference outputs lives in
``tests/integration/test_corruption_fidelity.py``."""

from __future__ import annotations

import colorsys
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from study import corruptions
from study.corruptions import _ops, noise
from study.corruptions.blur import glass_shuffle
from study.corruptions.digital import box_resize
from study.metrics import ALL_CORRUPTIONS


def _images(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random((n, 32, 32, 3)), (0, 2, 2, 0))  # image-like structure
    img = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255
    img[:, :4, :4] = 255  # saturated and black corners exercise the clips
    img[:, -4:, -4:] = 0
    return img.astype(np.uint8)


def _load(name: str):
    """The corruption function (imported, so a missing module fails loudly)."""
    return corruptions.get_corruption(name)


def _frost_kwargs(name: str, request) -> dict:
    # Only frost reads files; ask for the textures (or skip, saying why) for it alone.
    return {"frost_dir": request.getfixturevalue("frost_dir")} if name == "frost" else {}


def _run(name, images, severity, seed, request):
    _load(name)
    rng = np.random.default_rng(seed)
    return corruptions.corrupt(name, images, severity, rng, **_frost_kwargs(name, request))


def test_registry_names_and_partition():
    assert set(corruptions.REGISTRY) == set(ALL_CORRUPTIONS)
    assert corruptions.RANDOM | corruptions.DETERMINISTIC == set(ALL_CORRUPTIONS)
    assert not corruptions.RANDOM & corruptions.DETERMINISTIC
    assert len(corruptions.DETERMINISTIC) == 8 and len(corruptions.RANDOM) == 11
    assert isinstance(corruptions.GENERATOR_VERSION, str) and corruptions.GENERATOR_VERSION


def test_import_is_lazy():
    code = (
        "import sys, study.corruptions; "
        "bad = [m for m in ('PIL', 'study.corruptions.noise', 'study.corruptions.blur', 'ray', 'mlflow') "
        "if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_contract_shape_dtype_and_input_untouched(name, request):
    images = _images()
    before = images.copy()
    for severity in (1, 5):
        out = _run(name, images, severity, 0, request)
        assert out.dtype == np.uint8 and out.shape == images.shape
        assert not np.array_equal(out, images), f"{name} s{severity} left the images unchanged"
    np.testing.assert_array_equal(images, before)
    assert _run(name, images[:0], 3, 0, request).shape == (0, 32, 32, 3)


@pytest.mark.parametrize("name", sorted(corruptions.RANDOM))
def test_random_same_seed_same_bytes_other_seed_differs(name, request):
    images = _images()
    a = _run(name, images, 3, 7, request)
    b = _run(name, images, 3, 7, request)
    c = _run(name, images, 3, 8, request)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


@pytest.mark.parametrize("name", sorted(corruptions.DETERMINISTIC))
def test_deterministic_ignores_rng(name):
    images = _images()
    a = corruptions.corrupt(name, images, 2)
    b = corruptions.corrupt(name, images, 2, np.random.default_rng(123))
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
@pytest.mark.parametrize("severity", [0, 6, -1])
def test_severity_out_of_range(name, severity, request):
    fn = _load(name)
    images = _images(2)
    with pytest.raises(ValueError, match="severity"):
        corruptions.corrupt(name, images, severity, np.random.default_rng(0))
    with pytest.raises(ValueError, match="severity"):
        fn(images, severity, np.random.default_rng(0), **_frost_kwargs(name, request))


@pytest.mark.parametrize("severity", [2.0, True, "3", None])
def test_severity_must_be_an_integer(severity):
    with pytest.raises(ValueError, match="severity"):
        corruptions.corrupt("contrast", _images(2), severity)


def test_bad_name_lists_allowed():
    with pytest.raises(ValueError, match="allowed: gaussian_noise, shot_noise"):
        corruptions.corrupt("gaussian", _images(2), 1)


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((2, 32, 32, 3), dtype=np.float32), "uint8"),
        (np.zeros((32, 32, 3), dtype=np.uint8), r"\(N, 32, 32, 3\)"),
        (np.zeros((2, 28, 28, 3), dtype=np.uint8), r"\(N, 32, 32, 3\)"),
        (np.zeros((2, 3, 32, 32), dtype=np.uint8), r"\(N, 32, 32, 3\)"),
        ([[0]], "numpy array"),
    ],
)
def test_bad_images(images, match):
    with pytest.raises(ValueError, match=match):
        corruptions.corrupt("contrast", images, 1)


def test_random_needs_rng():
    with pytest.raises(ValueError, match="random: pass rng"):
        corruptions.corrupt("gaussian_noise", _images(2), 1)
    with pytest.raises(ValueError, match="Generator"):
        corruptions.corrupt("gaussian_noise", _images(2), 1, rng=np.random.RandomState(0))


# --- shared ops against brute force / the libraries they reproduce ---------------------------


@pytest.mark.parametrize("sigma", [0.05, 0.4, 0.7, 1.0, 3.0])
@pytest.mark.parametrize("mode", ["nearest", "mirror", "reflect"])
def test_gaussian_blur_is_scipys_bit_for_bit(sigma, mode):
    x = np.random.default_rng(1).random((3, 32, 32, 3))
    expected = ndimage.gaussian_filter(x, (0, sigma, sigma, 0), mode=mode, truncate=4.0)
    np.testing.assert_array_equal(_ops.gaussian_blur(x, sigma, mode=mode), expected)


def test_correlate2d_matches_scipy_reflect101():
    rng = np.random.default_rng(2)
    x, k = rng.random((2, 32, 32, 3)), rng.random((5, 3))
    np.testing.assert_allclose(
        _ops.correlate2d(x, k), ndimage.correlate(x, k[None, :, :, None], mode="mirror"), rtol=0, atol=1e-12
    )


def test_cv2_gaussian_kernel_closed_form():
    k = _ops.cv2_gaussian_kernel(3, 0.5)
    e = np.exp(-1 / (2 * 0.25))
    np.testing.assert_allclose(k, np.array([e, 1, e]) / (1 + 2 * e), rtol=1e-6)
    assert k.dtype == np.float32


def _brute_motion(img, radius, sigma, angle):
    offsets = _ops.motion_blur_offsets(radius, np.array([angle]))[0]
    k = np.exp(-(np.arange(len(offsets)) ** 2) / (2 * sigma**2))
    k /= k.sum()
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    for y in range(h):
        for x in range(w):
            for ki, (dy, dx) in zip(k, offsets):
                out[y, x] += ki * img[min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)]
    return out


def test_motion_blur_offsets_follow_the_angle():
    off = _ops.motion_blur_offsets(6, np.array([0.0, 90.0, -45.0]))
    assert off.shape == (3, 13, 2)
    np.testing.assert_array_equal(off[0], np.stack([np.zeros(13), np.arange(13)], -1))  # angle 0: rightwards
    np.testing.assert_array_equal(off[1], np.stack([np.arange(13), np.zeros(13)], -1))  # 90: downwards
    assert (off[2, :, 0] <= 0).all() and (off[2, :, 1] >= 0).all()  # -45: up and right


def test_motion_blur_matches_brute_force_with_edge_pixels():
    rng = np.random.default_rng(3)
    x = rng.random((4, 12, 12, 2))
    angles = np.array([-44.0, -10.0, 13.0, 44.0])
    out = _ops.motion_blur(x, 3, 1.5, angles)
    for i, a in enumerate(angles):
        np.testing.assert_allclose(out[i], _brute_motion(x[i], 3, 1.5, a), rtol=0, atol=1e-12)


def test_imagemagick_motion_blur_keeps_flat_images_and_quantises():
    flat = np.full((2, 8, 8), 200, dtype=np.uint8)
    np.testing.assert_array_equal(_ops.imagemagick_motion_blur(flat, 6, 2, [10.0, -30.0]), flat)
    x = np.random.default_rng(4).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    out = _ops.imagemagick_motion_blur(x, 6, 2, [0.0, 20.0, -20.0])
    exact = _ops.motion_blur(x.astype(float), 6, 2, [0.0, 20.0, -20.0])
    assert out.dtype == np.uint8 and np.abs(out - exact).max() <= 1.0


def test_imagemagick_motion_blur_floors_after_q16_rounding():
    # 8-bit grayscale layers as snow passes them: Q16 rounding first, then floor(q / 257),
    # never rounding to 8 bits.
    layers = np.random.default_rng(6).integers(0, 256, size=(3, 32, 32)).astype(np.uint8)
    angles = np.array([-135.0, -90.0, -50.0])
    q = np.floor(_ops.motion_blur(layers.astype(np.float64) * 257, 10, 4, angles) + 0.5)
    out = _ops.imagemagick_motion_blur(layers, 10, 4, angles)
    np.testing.assert_array_equal(out, np.floor(q / 257))
    assert (out != np.floor(q / 257 + 0.5)).any()  # the rounding that was ruled out gives other values


@pytest.mark.parametrize("z", [1.0, 1.01, 1.06, 1.13, 1.25])
def test_clipped_zoom_matches_scipy_zoom(z):
    img = np.random.default_rng(5).random((32, 32, 3))
    ch = int(np.ceil(32 / z))
    top = (32 - ch) // 2
    zoomed = ndimage.zoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
    trim = (zoomed.shape[0] - 32) // 2
    np.testing.assert_allclose(
        _ops.clipped_zoom(img[None], z)[0], zoomed[trim : trim + 32, trim : trim + 32], rtol=0, atol=1e-12
    )


def test_hsv_matches_colorsys_and_round_trips():
    rgb = np.random.default_rng(6).random((200, 3))
    rgb[:10] = rgb[:10, :1]  # grey pixels: H = S = 0
    rgb[10:20, 1] = rgb[10:20, 0]  # ties for the maximum
    hsv = _ops.rgb_to_hsv(rgb)
    expected = np.array([colorsys.rgb_to_hsv(*p) for p in rgb])
    np.testing.assert_allclose(hsv, expected, atol=1e-12)
    np.testing.assert_allclose(_ops.hsv_to_rgb(hsv), rgb, atol=1e-12)


def _shot_level_probabilities(k: int, photons: int) -> np.ndarray:
    """Brute force: P(output level) for input level k.

    Sums the Poisson pmf over counts far into the tail.
    """
    from scipy import stats

    counts = np.arange(photons * 3 + 200)
    pmf = stats.poisson.pmf(counts, (k / 255.0) * photons)
    levels = (np.clip(counts / photons, 0, 1) * 255).astype(np.uint8)
    return np.bincount(levels, weights=pmf, minlength=256)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_shot_noise_table_is_the_exact_poisson_distribution(severity):
    photons = noise.SHOT_PHOTONS[severity - 1]
    bounds, levels, _ = noise.shot_noise_table(photons)
    width = len(levels) // 256
    for k in (0, 1, 2, 60, 128, 200, 254, 255):
        row_bounds = np.minimum(bounds[k * width : (k + 1) * width], 1.0)
        probs = np.diff(row_bounds, prepend=0.0)
        got = np.bincount(levels[k * width : (k + 1) * width], weights=probs, minlength=256)
        np.testing.assert_allclose(got, _shot_level_probabilities(k, photons), rtol=0, atol=1e-12)


@pytest.mark.parametrize("k, severity", [(3, 1), (128, 1), (128, 5), (250, 3)])
def test_shot_noise_draws_follow_the_poisson_levels(k, severity):
    # 300k draws of one input level against the exact level probabilities
    # (chi-square, bins with >= 20 expected).
    images = np.full((100, 32, 32, 3), k, dtype=np.uint8)
    out = noise.shot_noise(images, severity, np.random.default_rng(0))
    observed = np.bincount(out.ravel(), minlength=256)
    expected = _shot_level_probabilities(k, noise.SHOT_PHOTONS[severity - 1]) * out.size
    big = expected >= 20
    chi2 = np.sum((observed[big] - expected[big]) ** 2 / expected[big])
    dof = int(big.sum()) - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof) + 10, f"chi2 {chi2:.1f} with {dof} degrees of freedom"
    assert observed[~big].sum() <= expected[~big].sum() + 5 * np.sqrt(expected[~big].sum() + 1) + 5


def _original_glass_pass(x, dx, dy, delta):
    """The original loop, tuple 'swap' included."""
    x = x.copy()
    size = x.shape[0]
    for a, h in enumerate(range(size - delta, delta, -1)):
        for b, w in enumerate(range(size - delta, delta, -1)):
            ai, bi = size - 2 * delta - 1 - a, size - 2 * delta - 1 - b  # index of h, w in ascending order
            hp, wp = h + dy[ai, bi], w + dx[ai, bi]
            x[h, w], x[hp, wp] = x[hp, wp], x[h, w]
    return x


def test_glass_shuffle_equals_the_sequential_swaps():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    dx, dy = rng.integers(-1, 1, size=(2, 3, 30, 30))
    out = glass_shuffle(x, dx, dy, 1)
    for i in range(3):
        np.testing.assert_array_equal(out[i], _original_glass_pass(x[i], dx[i], dy[i], 1))


@pytest.mark.parametrize("size", [30, 27, 20, 32, 40])
def test_box_resize_equals_pillow_per_image(size):
    x = _images(4)
    expected = np.stack(
        [np.asarray(Image.fromarray(i).resize((size, size), Image.Resampling.BOX)) for i in x]
    )
    np.testing.assert_array_equal(box_resize(x, size), expected)


def test_severity_params_error_names_the_corruption():
    with pytest.raises(ValueError, match="fog: severity must be an integer 1..5"):
        _ops.severity_params("fog", (1, 2, 3, 4, 5), 9)


def test_time_corruptions_reports_rates_per_corruption():
    from study.bench import corruption_timing as timing

    images = _images(4)
    results = timing.time_corruptions(images, names=("contrast", "gaussian_noise"), repeats=2)
    assert set(results) == {"contrast", "gaussian_noise"}
    for r in results.values():
        assert r["wall_s"] > 0 and r["cpu_s"] > 0
        assert r["images_per_s"] == pytest.approx(4 * 5 / r["wall_s"])
        assert r["images_per_cpu_s"] == pytest.approx(4 * 5 / r["cpu_s"])
    with pytest.raises(ValueError, match="repeats"):
        timing.time_corruptions(images, repeats=0)


def test_load_real_images_tiles_the_subset(subset_dir):
    from study.bench import corruption_timing as timing

    images = timing.load_real_images(subset_dir, 600)  # the test batch holds 500: the rest from data_batch_1
    assert images.shape == (600, 32, 32, 3) and images.dtype == np.uint8
    assert not np.array_equal(images[:100], images[500:])
    with pytest.raises(ValueError, match="no CIFAR-10 batches"):
        timing.load_real_images(subset_dir / "nowhere", 10)
