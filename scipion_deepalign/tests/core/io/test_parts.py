"""core.parts: the balanced split, the part record, and each rule the merge enforces."""
import os

import numpy as np
import pytest

from scipion_deepalign.core.io import parts as P
from scipion_deepalign.core.io import read_particles_star, write_particles_star
from scipion_deepalign.core.particles import CTFParams, Particles


def _particles(n, *, offset=0):
    rng = np.random.default_rng(n + offset)
    ctf = CTFParams(rng.uniform(1e4, 2e4, n), rng.uniform(1e4, 2e4, n), rng.uniform(0, 90, n))
    return Particles([f"{i + 1 + offset}@stack.mrcs" for i in range(n)], 2.0, 16,
                     angles_deg=rng.uniform(0, 90, (n, 3)), shifts_px=rng.normal(size=(n, 2)),
                     ctf=ctf, extra={"deepalignScore": rng.uniform(size=n)})


def _write_parts(folder, particles, n_parts, options=()):
    paths = []
    for i in range(1, n_parts + 1):
        record = P.part_record(particles, i, n_parts, options=options)
        path = os.path.join(folder, f"p{i}.star")
        P.write_part_star(path, particles.subset(P.part_rows(len(particles), i, n_parts)),
                          record)
        paths.append(path)
    return paths


@pytest.mark.parametrize("n, n_parts", [(10, 3), (7, 7), (100, 1), (5, 2)])
def test_part_rows_cover_the_input_once_and_balanced(n, n_parts):
    rows = [P.part_rows(n, i, n_parts) for i in range(1, n_parts + 1)]
    covered = np.concatenate([np.arange(n)[r] for r in rows])
    assert covered.tolist() == list(range(n))
    sizes = [r.stop - r.start for r in rows]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "2/"])
def test_parse_part_invalid(text):
    with pytest.raises(ValueError, match="part"):
        P.parse_part(text)


def test_count_parts():
    assert P.count_parts(1, 20000) == 1
    assert P.count_parts(20000, 20000) == 1
    assert P.count_parts(20001, 20000) == 2
    assert P.count_parts(0) == 1


def test_more_parts_than_particles():
    with pytest.raises(ValueError, match="at least one particle"):
        P.part_rows(2, 1, 3)


def test_record_round_trip_and_particles_unchanged(tmp_path):
    particles = _particles(9)
    record = P.part_record(particles, 2, 3)
    path = tmp_path / "part.star"
    P.write_part_star(path, particles.subset(slice(3, 6)), record)
    assert P.read_part_record(path) == record
    assert P.is_complete_part(path, record)
    assert not P.is_complete_part(path, P.part_record(particles, 1, 3))
    back = read_particles_star(path)
    assert len(back) == 3 and set(back.extra) == {"deepalignScore"}


def test_merge_in_any_order_restores_the_input(tmp_path):
    particles = _particles(10)
    write_particles_star(tmp_path / "whole.star", particles)
    paths = _write_parts(tmp_path, particles, 3)
    merged = P.merge_parts(paths[::-1], tmp_path / "all.star")
    whole = read_particles_star(tmp_path / "whole.star")
    again = read_particles_star(tmp_path / "all.star")
    assert again.image_names == whole.image_names and len(merged) == 10
    for got in (merged, again):
        np.testing.assert_array_equal(got.angles_deg, whole.angles_deg)
        np.testing.assert_array_equal(got.shifts_px, whole.shifts_px)
        np.testing.assert_array_equal(got.ctf.defocus_u_a, whole.ctf.defocus_u_a)
        np.testing.assert_array_equal(got.extra["deepalignScore"], whole.extra["deepalignScore"])
    assert P.read_part_record(tmp_path / "all.star") is None


def test_invalid_not_a_part(tmp_path):
    particles = _particles(6)
    paths = _write_parts(tmp_path, particles, 2)
    write_particles_star(tmp_path / "plain.star", particles)
    with pytest.raises(ValueError, match=r"not part outputs .*plain\.star"):
        P.merge_parts([*paths, str(tmp_path / "plain.star")], tmp_path / "all.star")


def test_invalid_missing_part(tmp_path):
    paths = _write_parts(tmp_path, _particles(9), 3)
    with pytest.raises(ValueError, match=r"part\(s\) 2 of 3 missing .*p1\.star.*p3\.star"):
        P.merge_parts([paths[0], paths[2]], tmp_path / "all.star")


def test_invalid_duplicated_part(tmp_path):
    paths = _write_parts(tmp_path, _particles(9), 3)
    copy = tmp_path / "copy.star"
    copy.write_text(open(paths[1]).read())
    with pytest.raises(ValueError, match=r"part 2/3 given twice: .*p2\.star and .*copy\.star"):
        P.merge_parts([*paths, str(copy)], tmp_path / "all.star")


def test_invalid_parts_of_another_split(tmp_path):
    particles = _particles(9)
    three = _write_parts(tmp_path, particles, 3)
    (tmp_path / "two").mkdir()
    two = _write_parts(tmp_path / "two", particles, 2)
    with pytest.raises(ValueError, match=r"different inputs or splits: .*p1\.star is part of 3"):
        P.merge_parts([*three, two[1]], tmp_path / "all.star")


def test_invalid_parts_of_a_shuffled_input(tmp_path):
    particles = _particles(9)
    shuffled = particles.subset(np.random.default_rng(0).permutation(9))
    paths = _write_parts(tmp_path, particles, 3)
    (tmp_path / "s").mkdir()
    other = _write_parts(tmp_path / "s", shuffled, 3)
    with pytest.raises(ValueError, match="different inputs"):
        P.merge_parts([paths[0], paths[1], other[2]], tmp_path / "all.star")


def test_invalid_output_among_the_inputs(tmp_path):
    paths = _write_parts(tmp_path, _particles(4), 2)
    with pytest.raises(ValueError, match="is one of the parts"):
        P.merge_parts(paths, paths[0])


def test_part_path_is_beside_the_output():
    assert P.part_path("/d/aligned.star", 3, 8) == "/d/aligned_parts/part_003_of_008.star"


def test_invalid_parts_made_with_other_options(tmp_path):
    particles = _particles(6)
    paths = _write_parts(tmp_path, particles, 2, options=["align", "--step", "5"])
    (tmp_path / "o").mkdir()
    other = _write_parts(tmp_path / "o", particles, 2, options=["align", "--step", "10"])
    with pytest.raises(ValueError, match=r"different options: .*p1\.star unlike .*o/p2\.star"):
        P.merge_parts([paths[0], other[1]], tmp_path / "all.star")
