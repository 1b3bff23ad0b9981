"""Direct Fourier inversion against the phantom that made the particles."""
import numpy as np
import pytest

from scipion_deepalign.core.geometry import euler_to_matrix
from scipion_deepalign.core.judge.fsc import fsc_curve
from scipion_deepalign.core.judge.reconstruct import (
    half_subsets,
    reconstruct,
    reconstruct_half_maps,
)
from scipion_deepalign.core.simulate import make_phantom, simulate_particles

BOX, PIXEL_A = 32, 4.0
NYQUIST_SHELL = BOX // 2


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(BOX, seed=0)


@pytest.fixture(scope="module")
def exact(phantom):
    return simulate_particles(phantom, 400, pixel_size_a=PIXEL_A, snr=np.inf, ctf=False,
                              max_shift_px=3.0, seed=1)


@pytest.fixture(scope="module")
def noisy_ctf(phantom):
    return simulate_particles(phantom, 500, pixel_size_a=PIXEL_A, snr=0.5, ctf=True,
                              max_shift_px=2.0, seed=2, defocus_range_a=(5000.0, 15000.0))


def _fsc(a, b):
    return fsc_curve(a, b, pixel_size_a=PIXEL_A).fsc


def test_exact_projections_reproduce_phantom(phantom, exact):
    images, parts = exact
    rec = reconstruct(images, parts.angles_deg, shifts_px=parts.shifts_px, pixel_size_a=PIXEL_A)
    assert rec.shape == (BOX,) * 3 and rec.dtype == np.float32
    fsc = _fsc(rec, phantom)
    assert np.all(fsc[:int(0.6 * NYQUIST_SHELL) + 1] >= 0.9)
    # same scale as the phantom (gridding correction, normalisation)
    scale = np.sum(rec * phantom) / np.sum(phantom * phantom)
    assert scale == pytest.approx(1.0, abs=0.08)


def test_shift_sign_matters(phantom, exact):
    images, parts = exact
    wrong = reconstruct(images, parts.angles_deg, shifts_px=-parts.shifts_px,
                        pixel_size_a=PIXEL_A)
    assert _fsc(wrong, phantom)[6] < 0.5


def test_ctf_and_noise(phantom, noisy_ctf):
    images, parts = noisy_ctf
    corrected = reconstruct(images, parts.angles_deg, shifts_px=parts.shifts_px, ctf=parts.ctf,
                            pixel_size_a=PIXEL_A)
    plain = reconstruct(images, parts.angles_deg, shifts_px=parts.shifts_px,
                        pixel_size_a=PIXEL_A)
    fsc_corr, fsc_plain = _fsc(corrected, phantom), _fsc(plain, phantom)
    assert np.all(fsc_corr[:int(0.4 * NYQUIST_SHELL) + 1] >= 0.85)
    # without CTF correction the curve goes negative past the first CTF zeros
    assert fsc_plain[8:].min() < 0
    assert fsc_corr[8:12].mean() > fsc_plain[8:12].mean() + 0.3


def _centre_of_mass(vol):
    """(z, y, x) in voxels of the voxels above 10 % of the maximum (the particle, not the
    background)."""
    strong = np.where(vol > 0.1 * vol.max(), vol, 0.0)
    grids = np.indices(vol.shape)
    return np.array([(g * strong).sum() for g in grids]) / strong.sum()


def test_exact_ctf_projections_reproduce_the_map():
    """Noise-free CTF'd particles at their true poses give back the map, as
    relion_reconstruct does (FSC 0.995 to 0.94 Nyquist on 1,000 particles of 64 px):
    high shells need the CTF applied to the box's own Fourier samples (2 A pixels, defocus
    1-3 um: the CTF rings are finer than the zero-padded image's samples), the lowest shells
    and the centre of mass a Wiener constant that is only a floor."""
    box, pixel_a = 40, 2.0
    vol = make_phantom(box, seed=0)
    images, parts = simulate_particles(vol, 300, pixel_size_a=pixel_a, snr=np.inf, ctf=True,
                                       max_shift_px=2.0, seed=4)
    rec = reconstruct(images, parts.angles_deg, shifts_px=parts.shifts_px, ctf=parts.ctf,
                      pixel_size_a=pixel_a)
    fsc = fsc_curve(rec, vol, pixel_size_a=pixel_a).fsc
    last = int(0.9 * box // 2)  # shell 18 of 20
    assert fsc[1:last + 1].min() >= 0.99, fsc.round(3)
    np.testing.assert_allclose(_centre_of_mass(rec), _centre_of_mass(vol), atol=0.1)


@pytest.mark.parametrize("symmetry", ["c4", "d2"])
def test_symmetry_improves_and_is_pose_invariant(symmetry):
    from scipion_deepalign.core.symmetry import to_asymmetric_unit
    vol = make_phantom(BOX, symmetry=symmetry, seed=0)
    images, parts = simulate_particles(vol, 120, pixel_size_a=PIXEL_A, snr=0.3, ctf=False,
                                       seed=3)
    sym = reconstruct(images, parts.angles_deg, pixel_size_a=PIXEL_A, symmetry=symmetry)
    asym = reconstruct(images, parts.angles_deg, pixel_size_a=PIXEL_A)
    shells = slice(3, 11)
    assert _fsc(sym, vol)[shells].mean() > _fsc(asym, vol)[shells].mean() + 0.05
    moved = to_asymmetric_unit(parts.angles_deg, symmetry)
    assert np.abs(moved - parts.angles_deg).max() > 10  # the poses really change
    again = reconstruct(images, moved, pixel_size_a=PIXEL_A, symmetry=symmetry)
    np.testing.assert_allclose(again, sym, atol=1e-4 * np.abs(sym).max())


def test_half_maps(phantom, exact):
    images, parts = exact
    images, angles, shifts = images[:120], parts.angles_deg[:120], parts.shifts_px[:120]
    subsets = half_subsets(120, seed=4)
    assert np.sum(subsets == 1) == 60 and set(np.unique(subsets)) == {1, 2}
    h1, h2, full = reconstruct_half_maps(images, angles, shifts_px=shifts, pixel_size_a=PIXEL_A,
                                         subsets=subsets)
    sel = subsets == 1
    np.testing.assert_allclose(
        h1, reconstruct(images[sel], angles[sel], shifts_px=shifts[sel], pixel_size_a=PIXEL_A),
        atol=1e-5)
    np.testing.assert_allclose(
        full, reconstruct(images, angles, shifts_px=shifts, pixel_size_a=PIXEL_A), atol=1e-5)
    # the 0/1 labels of half_index give the same halves
    g1, g2, _ = reconstruct_half_maps(images, angles, shifts_px=shifts, pixel_size_a=PIXEL_A,
                                      half_index=subsets - 1)
    np.testing.assert_array_equal(g2, h2)
    assert _fsc(h1, h2)[:8].min() > 0.9


def test_bad_inputs(exact):
    images, parts = exact
    with pytest.raises(ValueError, match=r"angles_deg must have shape \(5, 3\)"):
        reconstruct(images[:5], None, pixel_size_a=PIXEL_A)
    with pytest.raises(ValueError, match=r"shifts_px must have shape \(5, 2\)"):
        reconstruct(images[:5], parts.angles_deg[:5], shifts_px=np.zeros((4, 2)),
                    pixel_size_a=PIXEL_A)
    with pytest.raises(ValueError, match="images must have shape"):
        reconstruct(images[0], parts.angles_deg[:1], pixel_size_a=PIXEL_A)
    with pytest.raises(ValueError, match="subsets"):
        reconstruct_half_maps(images[:5], parts.angles_deg[:5], pixel_size_a=PIXEL_A,
                              subsets=np.array([1, 2, 3, 1, 2]))
    with pytest.raises(ValueError, match="half 2 has no particles"):
        reconstruct_half_maps(images[:3], parts.angles_deg[:3], pixel_size_a=PIXEL_A,
                              subsets=np.ones(3, dtype=int))
    with pytest.raises(ValueError, match="symmetry"):
        reconstruct(images[:3], parts.angles_deg[:3], pixel_size_a=PIXEL_A, symmetry="x7")


def _ncc(a, b):
    return np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]


@pytest.mark.parametrize("box", [64, 65])
def test_relion_origins_undone(box):
    """RELION-made shifted images with their origins give the map of the centred ones."""
    from scipion_deepalign.core.io import load_images, read_particles_star
    from scipion_deepalign.tests.shared_data import shared_file
    shifted = read_particles_star(shared_file(f"rln_proj_{box}_shifted.star"))
    centred = read_particles_star(shared_file(f"rln_proj_{box}_centered.star"))
    ref = reconstruct(load_images(centred), centred.angles_deg, pixel_size_a=5.0)
    images = load_images(shifted)
    right = reconstruct(images, shifted.angles_deg, shifts_px=shifted.shifts_px,
                        pixel_size_a=5.0)
    wrong = reconstruct(images, shifted.angles_deg, shifts_px=-shifted.shifts_px,
                        pixel_size_a=5.0)
    assert _ncc(right, ref) > 0.99
    assert abs(_ncc(wrong, ref)) < 0.2


def test_relion_projections_follow_the_convention():
    """Maps from RELION's projections of the ribosome and from ours (same poses) agree."""
    from scipion_deepalign.core.geometry import euler_to_matrix, matrix_to_euler
    from scipion_deepalign.core.io import load_images, read_particles_star, read_volume
    from scipion_deepalign.core.projection import project
    from scipion_deepalign.tests.shared_data import shared_file
    volume, _ = read_volume(shared_file("clean70SRibosome_vol_65p.mrc"))
    parts = read_particles_star(shared_file("rln_proj_65.star"), pixel_size_a=5.0)
    images = load_images(parts)
    # RELION's odd-box images are our projections moved by +1 px (PROVENANCE.md): origin -1
    origin = np.full((len(parts), 2), -1.0)
    from_relion = reconstruct(images, parts.angles_deg, shifts_px=origin, pixel_size_a=5.0)
    from_ours = reconstruct(project(volume, parts.angles_deg), parts.angles_deg,
                            pixel_size_a=5.0)
    assert _ncc(from_relion, from_ours) > 0.99
    transposed = matrix_to_euler(np.swapaxes(euler_to_matrix(parts.angles_deg), 1, 2))
    wrong = reconstruct(images, transposed, shifts_px=origin, pixel_size_a=5.0)
    assert _ncc(wrong, volume) < _ncc(from_relion, volume) - 0.3


# ------------------------------------------------------------- gridding (compiled loop)
def _reference_insert(acc, q, values, ctf2):
    """The former np.add.at gridding, neighbour by neighbour (the reference)."""
    p, n_x = acc.pad_box, acc.shape[2]
    flip = q[:, 0] < 0
    q = np.where(flip[:, None], -q, q)
    values = np.where(flip, np.conj(values), values)
    base = np.floor(q).astype(np.int64)
    frac = q - base
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                w = ((frac[:, 2] if dz else 1 - frac[:, 2]) * (frac[:, 1] if dy else 1 - frac[:, 1])
                     * (frac[:, 0] if dx else 1 - frac[:, 0]))
                flat = (((base[:, 2] + dz) % p) * p + (base[:, 1] + dy) % p) * n_x + base[:, 0] + dx
                np.add.at(acc.data_re, flat, w * values.real)
                np.add.at(acc.data_im, flat, w * values.imag)
                np.add.at(acc.weight, flat, w)
                if ctf2 is not None:
                    np.add.at(acc.ctf2, flat, w * ctf2)


@pytest.mark.parametrize("n_samples", [40, 3000], ids=["few-samples", "many-samples"])
def test_compiled_gridding_equals_add_at(n_samples):
    from scipion_deepalign.core.judge.fourier_grid import FourierAccumulator

    rng = np.random.default_rng(3)
    q = rng.uniform(-7, 7, (n_samples, 3))
    q[:5] = np.round(q[:5])  # samples on grid points and repeated voxels
    q[5:10] = q[0]
    values = rng.normal(size=n_samples) + 1j * rng.normal(size=n_samples)
    ctf2 = rng.random(n_samples)
    fast, slow = FourierAccumulator(16, with_ctf=True), FourierAccumulator(16, with_ctf=True)
    for _ in range(2):  # accumulating twice adds up
        fast.insert(q, values, ctf2)
        _reference_insert(slow, q, values, ctf2)
    for name in ("data_re", "data_im", "weight", "ctf2"):
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), rtol=1e-12,
                                   atol=1e-12, err_msg=name)


def test_planes_at_poses_equal_their_rotated_samples():
    """insert_planes puts image i's sample k at k @ mats[i], as the reference does."""
    from scipion_deepalign.core.judge.fourier_grid import FourierAccumulator

    rng = np.random.default_rng(4)
    k = np.c_[rng.uniform(-6, 6, (50, 2)), np.zeros(50)]
    mats = euler_to_matrix(rng.uniform(0, 180, (3, 3)))
    values = rng.normal(size=(3, 50)) + 1j * rng.normal(size=(3, 50))
    ctf2 = rng.random((3, 50))
    fast, slow = FourierAccumulator(16, with_ctf=True), FourierAccumulator(16, with_ctf=True)
    fast.insert_planes(k, mats, values, ctf2)
    for i in range(3):
        _reference_insert(slow, k @ mats[i], values[i], ctf2[i])
    np.testing.assert_allclose(fast.grid, slow.grid, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="ctf2 must be given exactly when"):
        fast.insert_planes(k, mats, values, None)


def test_non_finite_input_refused(exact):
    images, parts = exact
    bad = np.array(images, dtype=np.float32)
    bad[3, 2, 2] = np.nan
    with pytest.raises(ValueError, match=r"images of 1 particles hold NaN or Inf \(particles "
                                         r"\[3\]"):
        reconstruct(bad, parts.angles_deg, pixel_size_a=parts.pixel_size_a)
    angles = np.array(parts.angles_deg)
    angles[0, 1] = np.inf
    with pytest.raises(ValueError, match="angles_deg of 1 particles hold NaN or Inf"):
        reconstruct_half_maps(images, angles, pixel_size_a=parts.pixel_size_a)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_non_finite_map_never_returned():
    from scipion_deepalign.core.judge.fourier_grid import FourierAccumulator

    acc = FourierAccumulator(16, with_ctf=False)
    acc.weight[:] = 1.0
    acc.data_re[7] = np.inf
    with pytest.raises(ValueError, match="non-finite voxels"):
        acc.volume(8, wiener_constant=0.1)


def test_memory_mapped_stack_equals_in_memory(noisy_ctf, tmp_path):
    """Batches read from a memory map (flat memory) give the in-memory reconstruction."""
    from scipion_deepalign.core.io import read_mrc_stack, write_mrc

    images, parts = noisy_ctf
    images = images[:80]
    write_mrc(tmp_path / "p.mrcs", images, pixel_size_a=PIXEL_A, stack=True)
    mapped, _ = read_mrc_stack(tmp_path / "p.mrcs", mmap=True)
    assert isinstance(mapped, np.memmap)
    kw = dict(shifts_px=parts.shifts_px[:80], ctf=parts.ctf.subset(slice(0, 80)),
              pixel_size_a=PIXEL_A, batch_size=7)
    np.testing.assert_array_equal(reconstruct(mapped, parts.angles_deg[:80], **kw),
                                  reconstruct(images, parts.angles_deg[:80], **kw))
    halves = reconstruct_half_maps(mapped, parts.angles_deg[:80], seed=3, **kw)
    for a, b in zip(halves, reconstruct_half_maps(images, parts.angles_deg[:80], seed=3, **kw)):
        np.testing.assert_array_equal(a, b)


class _CountingLoader:
    """A loader (``shape`` + ``[rows]``) that records the largest read."""

    def __init__(self, images):
        self.images, self.shape, self.largest = images, images.shape, 0

    def __getitem__(self, rows):
        self.largest = max(self.largest, len(rows))
        return self.images[rows]


def test_loader_is_read_a_batch_at_a_time(exact):
    images, parts = exact
    loader = _CountingLoader(images[:60])
    vol = reconstruct(loader, parts.angles_deg[:60], shifts_px=parts.shifts_px[:60],
                      pixel_size_a=PIXEL_A, batch_size=8)
    assert loader.largest == 8
    np.testing.assert_array_equal(vol, reconstruct(
        images[:60], parts.angles_deg[:60], shifts_px=parts.shifts_px[:60],
        pixel_size_a=PIXEL_A, batch_size=8))


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_threads_give_the_same_maps(exact, threads):
    images, parts = exact
    images, angles, shifts = images[:90], parts.angles_deg[:90], parts.shifts_px[:90]
    done = []
    one = reconstruct_half_maps(images, angles, shifts_px=shifts, pixel_size_a=PIXEL_A)
    many = reconstruct_half_maps(images, angles, shifts_px=shifts, pixel_size_a=PIXEL_A,
                                 threads=threads, progress=done.append)
    for a, b in zip(one, many):  # the grids are summed in another order
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(a).max())
    assert sum(done) == 90
    np.testing.assert_allclose(
        reconstruct(images, angles, shifts_px=shifts, pixel_size_a=PIXEL_A, threads=threads),
        one[2], atol=1e-5 * np.abs(one[2]).max())


def test_bad_thread_count_refused(exact):
    images, parts = exact
    with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
        reconstruct(images[:4], parts.angles_deg[:4], pixel_size_a=PIXEL_A, threads=0)


def test_even_odd_halves_by_particle_id():
    from scipion_deepalign.core.judge.reconstruct import even_odd_subsets

    np.testing.assert_array_equal(even_odd_subsets([3, 4, 7, 10]), [1, 2, 1, 2])
    with pytest.raises(ValueError, match="every particle id is even or every one is odd"):
        even_odd_subsets([2, 4, 6])
