"""Build Scipion inputs (SetOfParticles with known poses, Volume) from simulated data.

Used by the protocol tests. The pattern is:

>>> data = simulate_dataset(tmp_dir, n=200, box_px=32)            # arrays + files
>>> parts = import_particles(cls, data.sqlite_path, data.pixel_size_a)   # run an import
>>> vol = import_volume(cls, data.volume_path, data.pixel_size_a)

``write_particles_sqlite`` writes a Scipion sqlite set (poses through
:func:`scipion_deepalign.convert.set_particle_pose`, CTF, acquisition) that pwem's
``ProtImportParticles`` reads with ``importFrom=IMPORT_FROM_SCIPION``; the import copies or
links the stack into the test project, so the set behaves like any user's input.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from scipion_deepalign.core.particles import Particles

__all__ = [
    "SimulatedData",
    "simulate_dataset",
    "write_particles_sqlite",
    "import_particles",
    "import_volume",
    "run_log",
]


@dataclass
class SimulatedData:
    """Files and truth of a simulated data set.

    Attributes
    ----------
    volume : ndarray of shape (B, B, B)
    images : ndarray of shape (N, B, B)
    truth : Particles
        True poses (``angles_deg``, ``shifts_px``) and CTF.
    stack_path, volume_path, sqlite_path : str
    pixel_size_a : float
    """

    volume: np.ndarray
    images: np.ndarray
    truth: Particles
    stack_path: str
    volume_path: str
    sqlite_path: str
    pixel_size_a: float


def simulate_dataset(out_dir, *, n=200, box_px=32, pixel_size_a=4.0, symmetry="c1",
                     snr=1.0, ctf=True, max_shift_px=0.0, seed=0, with_poses=True,
                     angles_deg=None) -> SimulatedData:
    """Simulate particles of the built-in phantom and write stack, volume and sqlite set.

    Parameters
    ----------
    out_dir : str
        Folder for ``particles.mrcs``, ``volume.mrc`` and ``particles.sqlite``.
    n, box_px, pixel_size_a, symmetry, snr, ctf, max_shift_px, seed, angles_deg
        Passed to :func:`scipion_deepalign.core.simulate.simulate_particles`.
    with_poses : bool
        Whether the sqlite set carries the true poses (``ALIGN_PROJ``).
    """
    import mrcfile

    from scipion_deepalign.core.simulate import make_phantom, simulate_particles

    os.makedirs(out_dir, exist_ok=True)
    volume = make_phantom(box_px, symmetry=symmetry, seed=seed).astype(np.float32)
    images, truth = simulate_particles(volume, n, pixel_size_a=pixel_size_a, snr=snr, ctf=ctf,
                                       max_shift_px=max_shift_px, seed=seed,
                                       angles_deg=angles_deg)
    stack_path = os.path.join(out_dir, "particles.mrcs")
    volume_path = os.path.join(out_dir, "volume.mrc")
    for path, data in ((stack_path, images), (volume_path, volume)):
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(np.asarray(data, dtype=np.float32))
            mrc.voxel_size = pixel_size_a
    sqlite_path = os.path.join(out_dir, "particles.sqlite")
    write_particles_sqlite(sqlite_path, stack_path, truth, with_poses=with_poses)
    return SimulatedData(volume, np.asarray(images, np.float32), truth, stack_path,
                         volume_path, sqlite_path, float(pixel_size_a))


def write_particles_sqlite(sqlite_path, stack_path, particles: Particles, *,
                           with_poses=True) -> str:
    """Write a Scipion SetOfParticles sqlite for the images of ``stack_path``.

    Parameters
    ----------
    sqlite_path : str
        Output file (overwritten).
    stack_path : str
        MRC stack; item ``i`` is image ``i + 1`` of it.
    particles : Particles
        Poses and CTF to record (CTF optional).
    with_poses : bool
        Record the poses (set marked ``ALIGN_PROJ``).
    """
    from pwem.objects import Acquisition, CTFModel, Particle, SetOfParticles

    from scipion_deepalign.convert import set_particle_pose

    if os.path.exists(sqlite_path):
        os.remove(sqlite_path)
    out = SetOfParticles(filename=sqlite_path)
    out.setSamplingRate(particles.pixel_size_a)
    acquisition = Acquisition()
    ctf = particles.ctf
    acquisition.setVoltage(ctf.voltage_kv if ctf else 300.0)
    acquisition.setSphericalAberration(ctf.cs_mm if ctf else 2.7)
    acquisition.setAmplitudeContrast(ctf.amplitude_contrast if ctf else 0.1)
    acquisition.setMagnification(50000)
    out.setAcquisition(acquisition)
    out.setHasCTF(ctf is not None)
    if with_poses and particles.has_poses:
        out.setAlignmentProj()
    shifts = particles.shifts_px
    if shifts is None:
        shifts = np.zeros((len(particles), 2))
    for i in range(len(particles)):
        item = Particle(location=(i + 1, os.path.abspath(stack_path)))
        item.setSamplingRate(particles.pixel_size_a)
        item.setAcquisition(acquisition.clone())
        if ctf is not None:
            model = CTFModel()
            # values kept as given (setStandardDefocus would swap U/V and turn the angle)
            model.setDefocusU(float(ctf.defocus_u_a[i]))
            model.setDefocusV(float(ctf.defocus_v_a[i]))
            model.setDefocusAngle(float(ctf.defocus_angle_deg[i]))
            item.setCTF(model)
        if with_poses and particles.has_poses:
            set_particle_pose(item, particles.angles_deg[i], shifts[i])
        out.append(item)
    out.write()
    out.close()
    return sqlite_path


def import_particles(test_cls, sqlite_path, pixel_size_a, *, label="import particles"):
    """Run pwem's ProtImportParticles on a Scipion sqlite; returns its ``outputParticles``."""
    from pwem.protocols import ProtImportParticles

    prot = test_cls.newProtocol(
        ProtImportParticles, objLabel=label,
        importFrom=ProtImportParticles.IMPORT_FROM_SCIPION, sqliteFile=sqlite_path,
        samplingRate=pixel_size_a, magnification=50000, voltage=300.0,
        sphericalAberration=2.7, amplitudeContrast=0.1, haveDataBeenPhaseFlipped=False)
    test_cls.launchProtocol(prot)
    return prot.outputParticles


def import_volume(test_cls, volume_path, pixel_size_a, *, label="import volume"):
    """Run pwem's ProtImportVolumes on one map; returns its ``outputVolume``."""
    from pwem.protocols import ProtImportVolumes

    prot = test_cls.newProtocol(ProtImportVolumes, objLabel=label, filesPath=volume_path,
                                samplingRate=pixel_size_a)
    test_cls.launchProtocol(prot)
    return prot.outputVolume


def run_log(protocol, *, last_lines=80) -> str:
    """The last lines of a protocol run's ``logs/run.stdout`` and ``run.stderr``."""
    text = []
    for name in ("run.stdout", "run.stderr"):
        path = protocol._getLogsPath(name)
        if os.path.exists(path):
            with open(path) as fh:
                lines = fh.readlines()[-last_lines:]
            text.append(f"----- {name} -----\n" + "".join(lines))
    return "\n".join(text)
