"""The variance split (core/classes/split.py): the first classes of a one-map start.

On a phantom-pair mixture at its true poses the split finds the classes far above chance,
from map A, from map B and from the mixture's own average (whose mean residual is zero: only
the covariance tells the classes apart); three classes by bisections; a focus mask keeps the
directions inside it; the weighted k-means lets a point of small weight join the centre
nearest in its own metric.
"""
import numpy as np
import pytest

from scipion_deepalign.core.classes import simulate_mixture
from scipion_deepalign.core.classes.split import kmeans, variance_split
from scipion_deepalign.core.judge.reconstruct import reconstruct
from scipion_deepalign.tests.helpers import phantom_pair

PIXEL_A = 4.0
SPLIT_A = 16.0  # the phantom's part is a ball of 16 A: compared up to 16 A


def balanced(found, truth):
    """Mean recall of the two true classes, under the better matching of the labels."""
    return max(float(np.mean([np.mean(labels[truth == c] == c) for c in (0, 1)]))
               for labels in (found, 1 - found))


@pytest.fixture(scope="module")
def mixture():
    a, b = phantom_pair()
    images, particles, truth = simulate_mixture([a, b], 160, pixel_size_a=PIXEL_A, snr=1.0,
                                                ctf=True, max_shift_px=2.0, seed=7)
    return images, particles, truth, (a, b)


def _split(images, particles, volume, **kw):
    return variance_split(images, volume, particles.angles_deg, k=2, pixel_size_a=PIXEL_A,
                          shifts_px=particles.shifts_px, ctf=particles.ctf,
                          resolution_a=SPLIT_A, **kw)


@pytest.mark.parametrize("which", ["A", "B", "average"])
def test_split_finds_the_classes(mixture, which):
    images, particles, truth, (a, b) = mixture
    volume = {"A": a, "B": b}.get(which)
    if volume is None:  # the mixture's own map: no mean difference to start from
        volume = reconstruct(images, particles.angles_deg, shifts_px=particles.shifts_px,
                             ctf=particles.ctf, pixel_size_a=PIXEL_A)
    split = _split(images, particles, volume)
    assert balanced(split.classes, truth) >= 0.9, which  # chance is 0.5
    report = split.report()
    assert report["kind"] == "variance" and sum(report["class_sizes"]) == len(truth)
    assert report["box_px"] < 32 and report["resolution_a"] == pytest.approx(
        2 * PIXEL_A * 32 / report["box_px"])
    assert split.scores.shape == (len(truth), 1)
    assert report["class_sizes"][0] >= report["class_sizes"][1]  # largest class first


def test_three_classes_by_bisections():
    """Three maps (the phantom, the phantom less a ball, less another ball farther away) from
    map A: the largest group is bisected again, and the three come out right (measured 0.996;
    one k-means over two directions merged two of them: 0.53)."""
    import itertools

    a, b = phantom_pair()
    grid = np.indices(a.shape)
    first = np.unravel_index(np.argmax(a), a.shape)
    far = np.where(np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, first))) > 10, a, 0)
    second = np.unravel_index(np.argmax(far), a.shape)
    r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, second)))
    c = (a * np.clip((r - 4.0) / 2.0, 0.0, 1.0)).astype(np.float32)
    images, particles, truth = simulate_mixture([a, b, c], 240, pixel_size_a=PIXEL_A, snr=1.0,
                                                ctf=True, max_shift_px=2.0, seed=5)
    split = variance_split(images, a, particles.angles_deg, k=3, pixel_size_a=PIXEL_A,
                           shifts_px=particles.shifts_px, ctf=particles.ctf,
                           resolution_a=SPLIT_A)
    best = max(np.mean([np.mean(np.asarray(perm)[split.classes][truth == t] == t)
                        for t in range(3)]) for perm in itertools.permutations(range(3)))
    assert best >= 0.95  # chance is 1/3
    assert split.directions.shape[0] == 2 and split.scores.shape == (240, 2)
    sizes = split.report()["class_sizes"]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == 240


def test_split_directions_stay_in_the_focus_mask(mixture):
    images, particles, _, (a, _) = mixture
    y = np.arange(32)[None, :, None]
    mask = np.broadcast_to(np.clip((20.0 - y) / 8.0, 0.0, 1.0), a.shape)  # y < 12, soft to 20
    split = _split(images, particles, a, mask=mask, iterations=3)
    direction = np.abs(split.directions[0])  # on the split's box, half the particles'
    assert direction.shape == (16, 16, 16)
    assert direction[:, 11:].max() < 0.02 * direction[:, :6].max()
    assert split.iterations <= 3


def test_split_refuses_one_class(mixture):
    images, particles, _, (a, _) = mixture
    with pytest.raises(ValueError, match="at least 2 classes"):
        variance_split(images, a, particles.angles_deg, k=1, pixel_size_a=PIXEL_A)


def test_weighted_kmeans_weighs_each_point_by_its_noise():
    """Sure points at -1 (60) and +1 (40), and 200 noisy ones spread over 0.1..3: unweighted,
    the noisy points drag the centres (the boundary moves above 0.1 and the nearest noisy points
    join the group at -1); weighted little, they leave the centres at -1 and +1 and all join
    the group at +1, their nearest."""
    rng = np.random.default_rng(0)
    sure = np.concatenate([rng.normal(-1, 0.05, 60), rng.normal(1, 0.05, 40)])
    noisy = np.linspace(0.1, 3.0, 200)
    points = np.concatenate([sure, noisy])[:, None]
    weights = np.concatenate([np.ones(100), np.full(200, 1e-4)])[:, None]
    weighted = kmeans(points, 2, weights=weights, seed=0)
    assert (weighted[100:] == weighted[60]).all() and (weighted[:60] != weighted[60]).all()
    assert np.bincount(weighted).tolist() == [240, 60]  # largest group first
    plain = kmeans(points, 2, seed=0)
    assert (plain[100:110] == plain[0]).all()  # noisy points near 0.1 with the group at -1
    with pytest.raises(ValueError, match="3 particles cannot make 4 classes"):
        kmeans(points[:3], 4)
