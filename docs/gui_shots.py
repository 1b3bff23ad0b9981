"""Screenshots of the DeepAlign GUI as users see it (``make gui-shots``).

Run under a virtual X display (``xvfb-run -s "-screen 0 1400x1000x24" python docs/gui_shots.py``):
it creates a throw-away Scipion project, opens the project window with the DeepAlign group
of the protocol tree expanded, then each protocol's form, and saves small PNGs into
``docs/screenshots/``. Nothing is run. Needs Tk, a display and Pillow with XCB support.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "screenshots"
ROOT = Path(tempfile.mkdtemp(prefix="deepalign-gui-shots-"))
#: protocol class -> (screenshot name, tab shown, advanced level?); the forms users open most
FORMS = {"DeepAlignProtRefine": ("form_train_predict_align", 0, False),
         "DeepAlignProtTrain": ("form_train_advanced", 1, True),
         "DeepAlignProtAlign": ("form_align_advanced", 1, True),
         "DeepAlignProtConsensus": ("form_consensus", 0, False),
         "DeepAlignProtReconstruct": ("form_reconstruct", 0, False)}
DELAY_MS = 2500
MAX_WIDTH = 900


def _environment():
    """The headless pyworkflow set-up of the test suite (conftest.py), before any import."""
    home = ROOT / "scipion_home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "hosts.conf").write_text(
        "[localhost]\nPARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s\n"
        "NAME = localhost\nCANCEL_COMMAND = kill %_(JOB_ID)s\nCHECK_COMMAND = ps -p "
        "%_(JOB_ID)s\nSUBMIT_COMMAND = bash %_(JOB_SCRIPT)s\nSUBMIT_PREFIX = scipion\n"
        "QUEUE_FOR_JOBS = N\n")
    os.environ.update(SCIPION_HOME=str(home), SCIPION_USER_DATA=str(ROOT / "user_data"),
                      SCIPION_DOMAIN="pwem", SCIPION_PYTHON=sys.executable,
                      SCIPION_NOTIFY="False", SCIPION_TEST_NOSYNC="True")


def _grab(window, name):
    """Save the Tk window as ``docs/screenshots/<name>.png``, at most MAX_WIDTH wide."""
    from PIL import Image, ImageGrab

    window.update()
    x, y = window.winfo_rootx(), window.winfo_rooty()
    w, h = window.winfo_width(), window.winfo_height()
    image = ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=os.environ["DISPLAY"])
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)),
                             Image.LANCZOS)
    OUT.mkdir(exist_ok=True)
    image.save(OUT / f"{name}.png", optimize=True)
    print(f"wrote {OUT / name}.png")


def _grab_screen(name):
    """Save every window on the (black) virtual screen, cropped to them, and leave."""
    from PIL import ImageGrab

    image = ImageGrab.grab(xdisplay=os.environ["DISPLAY"])
    image = image.crop(image.convert("L").point(lambda v: 255 if v > 8 else 0).getbbox())
    image.thumbnail((MAX_WIDTH, MAX_WIDTH))
    OUT.mkdir(exist_ok=True)
    image.save(OUT / f"{name}.png", optimize=True)
    print(f"wrote {OUT / name}.png")
    sys.stdout.flush()
    os._exit(0)


def _mask_wizard(project):
    """The reconstruction form's FSC mask wizard on imported simulated particles."""
    import pyworkflow.gui.project  # noqa: F401  (first: pyworkflow.gui.form imports it back)
    from pwem.protocols import ProtImportParticles
    from pyworkflow.gui.form import FormWindow

    from scipion_deepalign.protocols import DeepAlignProtReconstruct
    from scipion_deepalign.tests.scipion_helpers import simulate_dataset
    from scipion_deepalign.wizards import DeepAlignFscMaskWizard

    data = simulate_dataset(str(ROOT / "data"), n=20, box_px=48, pixel_size_a=2.0, snr=100.0,
                            ctf=False, seed=1)
    imported = project.newProtocol(
        ProtImportParticles, importFrom=ProtImportParticles.IMPORT_FROM_SCIPION,
        sqliteFile=data.sqlite_path, samplingRate=2.0, magnification=50000, voltage=300.0,
        sphericalAberration=2.7, amplitudeContrast=0.1, haveDataBeenPhaseFlipped=False)
    project.launchProtocol(imported, wait=True)
    protocol = project.newProtocol(DeepAlignProtReconstruct, maskRadiusA=30.0)
    protocol.inputParticles.set(imported)
    protocol.inputParticles.setExtended("outputParticles")
    window = FormWindow(f"Protocol Run: {protocol.getClassLabel()}", protocol,
                        lambda *args, **kwargs: None)
    window.root.after(DELAY_MS // 2,
                      lambda: DeepAlignFscMaskWizard().show(window, "maskRadiusA"))
    window.root.after(2 * DELAY_MS, lambda: _grab_screen("wizard_fsc_mask"))
    window.show(center=True)


def _done(window, name):
    """Grab, then leave at once (the project window keeps non-daemon threads alive)."""
    _grab(window, name)
    sys.stdout.flush()
    os._exit(0)


def _expand_deepalign_group(project_window):
    """Open the Refine section and the DeepAlign group of the protocol tree."""
    tree = project_window.getViewWidget().protTree
    pending = list(tree.get_children(""))
    while pending:
        item = pending.pop()
        text = tree.item(item, "text")
        if text in ("Refine", "DeepAlign") or "DeepAlign" in text:
            tree.item(item, open=True)
            tree.see(item)
        pending.extend(tree.get_children(item))


def _widen_protocol_tree(widget, width=400):
    """Move the sash between the protocol tree and the runs so the labels are readable."""
    import tkinter as tk

    if isinstance(widget, tk.PanedWindow) and str(widget.cget("orient")) == "horizontal":
        widget.sash_place(0, width, 0)
        return True
    return any(_widen_protocol_tree(child, width) for child in widget.winfo_children())


def _project_window(project):
    from pyworkflow.gui.project import ProjectWindow

    window = ProjectWindow(project.getName())

    def shoot():
        _expand_deepalign_group(window)
        _widen_protocol_tree(window.root)
        window.root.after(800, lambda: _done(window.root, "project_window"))

    window.root.geometry("1100x650+0+0")
    window.root.after(DELAY_MS, shoot)
    window.show(center=False)


def _select_tab(widget, index):
    """Show tab ``index`` of the form's notebook (the sections: Input, Training...)."""
    from tkinter import ttk

    if isinstance(widget, ttk.Notebook):
        widget.select(index)
        return True
    return any(_select_tab(child, index) for child in widget.winfo_children())


def _form(project, class_name, name, tab, advanced):
    import pyworkflow.gui.project  # noqa: F401  (first: pyworkflow.gui.form imports it back)
    import pyworkflow.protocol.params as params
    from pyworkflow.gui.form import FormWindow

    from scipion_deepalign import protocols

    protocol = project.newProtocol(getattr(protocols, class_name))
    if advanced:
        protocol.expertLevel.set(params.LEVEL_ADVANCED)
    window = FormWindow(f"Protocol Run: {protocol.getClassLabel()}", protocol,
                        lambda *args, **kwargs: None)
    window.adjustSize()
    window.root.after(DELAY_MS // 2, lambda: _select_tab(window.root, tab))
    window.root.after(DELAY_MS, lambda: _done(window.root, name))
    window.show(center=True)


def _figures():
    """The viewers' figures, drawn by the same core code on synthetic data (no window)."""
    import numpy as np

    from scipion_deepalign.core import plots
    from scipion_deepalign.core.geometry import random_angles_deg
    from scipion_deepalign.core.judge.fsc import fsc_curve
    from scipion_deepalign.core.regions import region_centres_deg
    from scipion_deepalign.core.simulate import make_phantom

    rng = np.random.default_rng(0)
    OUT.mkdir(exist_ok=True)
    angles = random_angles_deg(5000, rng)  # half of them in a preferred view
    angles[:2500, 0], angles[:2500, 1] = rng.normal(0, 15, 2500), rng.normal(90, 10, 2500)
    plots.plot_angular_distribution(angles, path=OUT / "viewer_distribution.png")
    volume = make_phantom(64, seed=0)
    noise = [s * volume.std() for s in (0.5, 2.0)]
    curves = [fsc_curve(volume + n * rng.standard_normal(volume.shape),
                        volume + n * rng.standard_normal(volume.shape), pixel_size_a=1.5)
              for n in noise]
    plots.plot_fsc(curves, ["deepalign half maps", "global search half maps"],
                   path=OUT / "viewer_fsc.png")
    epochs = np.arange(1, 9)
    history = {"loss": list(0.9 / epochs + 0.2), "val_loss": list(1.0 / epochs + 0.3),
               "accuracy": list(0.9 - 0.5 / epochs), "val_accuracy": list(0.8 - 0.5 / epochs)}
    plots.plot_training_history({0: history}, path=OUT / "viewer_training.png")
    centres = region_centres_deg(30.0, "c1")[:, :2]
    plots.plot_region_counts(centres, rng.integers(20, 120, len(centres)),
                             overall_accuracy=0.72, path=OUT / "viewer_regions.png")
    print(f"wrote the viewer figures into {OUT}")


def main(argv):
    """No argument: every shot, each in its own process (one Tk main loop per process)."""
    if not os.environ.get("DISPLAY"):
        sys.exit("no DISPLAY: run under xvfb-run (make gui-shots)")
    if not argv:
        for shot in ["project", "figures", "mask-wizard"] + list(FORMS):
            subprocess.run([sys.executable, __file__, shot], check=True, timeout=120)
        return
    if argv[0] == "figures":
        _figures()
        return
    _environment()
    from pyworkflow.project import Manager

    project = Manager().createProject("deepalign_gui_shots")
    os.chdir(project.getPath())  # pyworkflow runs protocols from the project folder
    if argv[0] == "project":
        _project_window(project)
    elif argv[0] == "mask-wizard":
        _mask_wizard(project)
    else:
        _form(project, argv[0], *FORMS[argv[0]])


if __name__ == "__main__":
    main(sys.argv[1:])
