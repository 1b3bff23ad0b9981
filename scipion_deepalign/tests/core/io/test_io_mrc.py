"""MRC IO: round trips, atomic writes and one test per validation rule of core.io.mrc."""
import os
import warnings

import mrcfile
import numpy as np
import pytest

from scipion_deepalign.core.io import (
    read_mrc,
    read_mrc_stack,
    read_volume,
    write_mrc,
    write_mrc_stack_chunks,
)
from scipion_deepalign.tests.shared_data import shared_file


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("shape", [(24, 24), (5, 24, 24), (24, 24, 24)], ids=["2d", "stack", "vol"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_write_read_round_trip(tmp_path, rng, shape, dtype):
    data = (rng.normal(size=shape) * 100).astype(dtype)
    path = tmp_path / "x.mrc"
    write_mrc(path, data, pixel_size_a=1.7)
    back, pixel = read_mrc(path)
    assert back.dtype == np.float32 and back.shape == shape
    np.testing.assert_allclose(back, data.astype(np.float32))
    assert pixel == pytest.approx(1.7)


def test_write_no_pixel_size_reads_none(tmp_path):
    write_mrc(tmp_path / "x.mrc", np.zeros((4, 4, 4)), pixel_size_a=None)
    assert read_mrc(tmp_path / "x.mrc")[1] is None


def test_mrcs_is_marked_as_stack_and_mrc_as_volume(tmp_path):
    data = np.zeros((3, 8, 8), np.float32)
    write_mrc(tmp_path / "s.mrcs", data, pixel_size_a=1.0)
    write_mrc(tmp_path / "v.mrc", np.zeros((8, 8, 8)), pixel_size_a=1.0)
    with mrcfile.open(tmp_path / "s.mrcs") as m:
        assert m.is_image_stack()
    with mrcfile.open(tmp_path / "v.mrc") as m:
        assert m.is_volume()


def test_write_is_atomic_and_leaves_no_temp_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "x.mrc"
    write_mrc(path, np.ones((4, 4, 4)), pixel_size_a=1.0)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mrcfile, "new", boom)
    with pytest.raises(OSError, match="disk full"):
        write_mrc(path, np.zeros((4, 4, 4)), pixel_size_a=1.0)
    assert os.listdir(tmp_path) == ["x.mrc"]  # no temp file left
    np.testing.assert_array_equal(read_mrc(path)[0], 1.0)  # old content intact


def test_stack_written_in_chunks_equals_the_stack_written_at_once(tmp_path, rng):
    data = rng.normal(size=(7, 12, 12)).astype(np.float32) * 3 + 1
    write_mrc(tmp_path / "whole.mrcs", data, pixel_size_a=1.5)
    write_mrc_stack_chunks(tmp_path / "parts.mrcs", 7, 12, (data[i:i + 3] for i in (0, 3, 6)),
                           pixel_size_a=1.5)
    back, pixel = read_mrc_stack(tmp_path / "parts.mrcs")
    np.testing.assert_array_equal(back, data)
    assert pixel == pytest.approx(1.5)
    with mrcfile.open(tmp_path / "whole.mrcs") as a, mrcfile.open(tmp_path / "parts.mrcs") as b:
        assert b.is_image_stack()
        for key in ("dmin", "dmax", "dmean", "rms"):
            assert float(b.header[key]) == pytest.approx(float(a.header[key]), rel=1e-5)


@pytest.mark.parametrize("chunks, message", [
    ([np.zeros((2, 12, 12)), np.zeros((2, 10, 10))], r"images 3\.\. are \(10, 10\) px"),
    ([np.zeros((2, 12, 12))], "2 images written, 4 announced"),
])
def test_a_broken_chunked_stack_is_refused_and_leaves_nothing(tmp_path, chunks, message):
    with pytest.raises(ValueError, match=message):
        write_mrc_stack_chunks(tmp_path / "s.mrcs", 4, 12, iter(chunks), pixel_size_a=1.0)
    assert os.listdir(tmp_path) == []


def test_read_stack_2d_is_stack_of_one(tmp_path):
    write_mrc(tmp_path / "one.mrc", np.arange(36.0).reshape(6, 6), pixel_size_a=2.0)
    stack, pixel = read_mrc_stack(tmp_path / "one.mrc")
    assert stack.shape == (1, 6, 6) and pixel == 2.0
    assert stack[0, 1, 0] == 6.0


def test_read_stack_mmap(tmp_path, rng):
    data = rng.normal(size=(7, 16, 16)).astype(np.float32)
    write_mrc(tmp_path / "s.mrcs", data, pixel_size_a=1.0)
    stack, _ = read_mrc_stack(tmp_path / "s.mrcs", mmap=True)
    assert isinstance(stack, np.memmap) and not stack.flags.writeable  # mrcfile's, read-only
    np.testing.assert_array_equal(stack[[5, 2]], data[[5, 2]])
    one, _ = read_mrc_stack(tmp_path / "s.mrcs", mmap=True)  # the file closed, the map lives
    np.testing.assert_array_equal(one[6], data[6])


# ---------------------------------------------------------------- one test per rule
def test_invalid_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.mrc"):
        read_mrc(tmp_path / "nothere.mrc")


def test_invalid_truncated_file(tmp_path):
    path = tmp_path / "cut.mrc"
    write_mrc(path, np.ones((8, 8, 8)), pixel_size_a=1.0)
    with open(path, "r+b") as f:
        f.truncate(1024 + 100)
    with pytest.raises(ValueError, match=r"cut\.mrc: not a readable MRC file.*data block"):
        read_mrc(path)


def test_invalid_garbage_file(tmp_path):
    path = tmp_path / "junk.mrc"
    path.write_bytes(b"this is not an MRC file\n" * 3)
    with pytest.raises(ValueError, match=r"junk\.mrc: not a readable MRC file"):
        read_mrc(path)


def test_invalid_corrupt_mode(tmp_path):
    path = tmp_path / "mode.mrc"
    write_mrc(path, np.ones((4, 4, 4)), pixel_size_a=1.0)
    with mrcfile.open(path, "r+") as m:
        m.header.mode = 42
    with pytest.raises(ValueError, match=r"mode\.mrc: not a readable MRC file"):
        read_mrc(path)


def test_invalid_old_style_header_warns_and_reads(tmp_path):
    path = tmp_path / "old.mrcs"
    write_mrc(path, np.arange(2 * 8 * 8.0).reshape(2, 8, 8), pixel_size_a=1.0)
    with open(path, "r+b") as f:  # wipe the MAP ID string and machine stamp, as old RELION
        f.seek(208)
        f.write(b"\0" * 8)
    with pytest.warns(UserWarning, match=r"old\.mrcs: old-style MRC header"):
        stack, _ = read_mrc_stack(path)
    assert stack.shape == (2, 8, 8) and stack[1, 0, 0] == 64.0


def test_invalid_old_style_header_real_relion_file():
    path = shared_file("star", "relion31.mrcs")
    with pytest.warns(UserWarning, match="relion31.mrcs: old-style MRC header"):
        stack, _ = read_mrc_stack(path)
    assert stack.shape == (5, 256, 256) and np.isfinite(stack).all() and stack.std() > 0


def test_invalid_volume_given_a_stack(tmp_path):
    write_mrc(tmp_path / "s.mrcs", np.zeros((5, 8, 8)), pixel_size_a=1.0)
    with pytest.raises(ValueError, match=r"s\.mrcs: a cubic 3D volume was expected.*\(5, 8, 8\)"):
        read_volume(tmp_path / "s.mrcs")


def test_invalid_volume_given_an_image(tmp_path):
    write_mrc(tmp_path / "i.mrc", np.zeros((8, 8)), pixel_size_a=1.0)
    with pytest.raises(ValueError, match=r"i\.mrc: a 3D volume was expected.*single 2D image"):
        read_volume(tmp_path / "i.mrc")


def test_invalid_stack_given_a_volume_stack(tmp_path):
    path = tmp_path / "vs.mrc"
    with mrcfile.new(path) as m:
        m.set_data(np.zeros((2, 4, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"vs\.mrc: an image stack was expected.*4D"):
        read_mrc_stack(path)


def test_invalid_stack_non_square_images(tmp_path):
    write_mrc(tmp_path / "r.mrcs", np.zeros((3, 8, 6)), pixel_size_a=1.0)
    with pytest.raises(ValueError, match=r"r\.mrcs: images must be square.*8 x 6"):
        read_mrc_stack(tmp_path / "r.mrcs")


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="must be 2D or 3D"):
        write_mrc(tmp_path / "x.mrc", np.zeros(5), pixel_size_a=1.0)
    with pytest.raises(ValueError, match="pixel_size_a.*positive"):
        write_mrc(tmp_path / "x.mrc", np.zeros((4, 4)), pixel_size_a=-1.0)
    with pytest.raises(FileNotFoundError, match="output folder"):
        write_mrc(tmp_path / "no" / "x.mrc", np.zeros((4, 4)), pixel_size_a=1.0)


def test_real_volumes_read_as_volumes():
    vol, pixel = read_volume(shared_file("trpv1", "trpv1_volume.mrc"))
    assert vol.shape == (48, 48, 48) and pixel == pytest.approx(4.88)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean modern file: no warning
        vol, pixel = read_volume(shared_file("clean70SRibosome_vol_65p.mrc"))
    assert vol.shape == (65, 65, 65) and pixel is None
