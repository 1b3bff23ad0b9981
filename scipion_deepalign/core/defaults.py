"""Defaults and choice lists shared by every face of DeepAlign: one place per fact.

The GUI forms (``protocols/``), the command line (``cli/``), the wizards and the core's own
signatures read their defaults here (``tests/core/test_defaults.py`` compares the core's
signatures, and ``tests/scipion/test_forms.py`` the CLI parsers and the forms, with this
module). The training defaults are the field defaults of
:class:`~scipion_deepalign.core.cnn.config.TrainConfig`, read with :func:`train_default`.

A leaf: this module imports nothing from the package (no numba, no Keras, no Scipion), so
anyone may read it cheaply.
"""
from __future__ import annotations

__all__ = ["NETWORKS", "LOSSES", "HEADS", "TRUNKS", "CLASS_OUTPUTS", "TRAINING_SOURCES",
           "CTF_MODES", "DEVICES",
           "REGION_SPACING_DEG", "TOP_K",
           "MAX_SHIFT_BOX_FRACTION", "CONSENSUS_MAX_ANGLE_DEG", "TRAIN_DEFAULTS", "train_default",
           "default_max_shift_px", "mask_radius_or_default_px", "RECONSTRUCT_THREADS", "REFINE",
           "ALIGN_BATCH",
           "CONSENSUS_REPORT_THRESHOLDS_DEG", "PIXEL_SIZE_RTOL", "same_pixel_size",
           "check_pixel_sizes",
           "GALLERY_STEP_PX", "REFINE_STARTS", "PARTICLE_RADIUS_BOX_FRACTION", "MAX_STEP_DEG",
           "TARGET_RESOLUTION", "FULL_RESOLUTION"]

# --- choice lists ------------------------------------------------------------------------
#: network kinds: one shared-trunk network over all regions, or one classifier per region
#: (the paper's). The forms store the index: never reorder.
NETWORKS = ("regional", "shared")
#: output layer of the shared network: one softmax over the regions or a sigmoid per region
HEADS = ("softmax", "sigmoid")
#: convolutional trunk of the shared network: on a polar resampling of the image (invariant
#: to the in-plane rotation) or on the image itself (the paper's)
TRUNKS = ("polar", "cartesian")
#: class output of a shared network trained from K >= 2 maps (core/cnn/joint.py): one softmax
#: over the K x R (class, region) pairs, or a softmax over the K classes beside the region
#: softmax on the same trunk, p(k, r) = p(k) p(r). Default joint (TRAIN_DEFAULTS), measured on
#: the 70S ribosome less a 45 or 70 A ball: it classed as well or better in all three runs
#: (+0.01 to +0.04) and found the true (class, region) pair as often or more often in two
#: (docs/benchmarks_classes.md, "Class head or joint softmax")
CLASS_OUTPUTS = ("joint", "head")
#: where training images come from: projections of the reference map made on the fly, the
#: aligned subset (the paper), or both mixed in every batch
TRAINING_SOURCES = ("projections", "particles", "both")
#: training losses: binary cross-entropy, mean absolute error (Xmipp's code)
LOSSES = ("bce", "mae")
#: CTF handling of the alignment: the CTF on the references; phase-flip the particles first;
#: particles already phase-flipped (|CTF| on the references)
CTF_MODES = ("apply", "flip", "flipped")
#: where arrays are computed: the GPU when one works, the CPU, or the GPU (an error without)
DEVICES = ("auto", "cpu", "gpu")

# --- regions and prediction --------------------------------------------------------------
#: angular distance between neighbouring region centres (degrees); 30 gives 42 regions in c1
REGION_SPACING_DEG = 30.0
#: regions kept per particle (with their probabilities) by the prediction: as many as the
#: default adaptive search may use (``search_plan.SearchOptions.max_regions``: up to 16 for
#: the particles the network is unsure of, measured in docs/benchmarks_accuracy.md, "Regions
#: searched: probability mass and cap")
TOP_K = 16

# --- alignment ---------------------------------------------------------------------------
#: whether alignments refine their poses below the gallery step by default (the automatic
#: gallery step is then two pixels at the particle radius instead of one; why:
#: docs/benchmarks_accuracy.md)
REFINE = True
#: largest shift searched, as a fraction of the particle box, when none is given
MAX_SHIFT_BOX_FRACTION = 1.0 / 8.0
#: particles per correlation block of an alignment (halved on out-of-memory errors)
ALIGN_BATCH = 256
#: automatic gallery step, as the pixels a point at the particle radius moves: 1 when the
#: gallery's poses are final, 2 when the local refinement follows (it searches below the
#: step; measured: docs/benchmarks_accuracy.md, "Local refinement by default")
GALLERY_STEP_PX = {False: 1.0, True: 2.0}
#: distinct gallery poses per particle the local refinement starts from (the best of their
#: refined poses is kept; measured: docs/benchmarks_accuracy.md, "Refinement from several
#: starts")
REFINE_STARTS = 3
#: particle radius as a fraction of the box when no mask radius is given (the automatic
#: step's radius and the references' mask)
PARTICLE_RADIUS_BOX_FRACTION = 0.45
#: largest angular step of a gallery (degrees): coarser grids miss whole views
MAX_STEP_DEG = 30.0

# --- judging -----------------------------------------------------------------------------
#: threads of a reconstruction: the two half maps gridded side by side (docs/benchmarks.md)
RECONSTRUCT_THREADS = 2
#: consensus: largest angle between projection directions for two poses to agree (degrees)
CONSENSUS_MAX_ANGLE_DEG = 10.0
#: consensus: angles (degrees) under which the summaries report the fraction of particles
CONSENSUS_REPORT_THRESHOLDS_DEG = (5.0, 10.0, 15.0)

# --- geometry of two inputs --------------------------------------------------------------
#: two pixel sizes are the same when they differ by at most this fraction of the larger
PIXEL_SIZE_RTOL = 1e-3


def same_pixel_size(a_a: float, b_a: float) -> bool:
    """Whether two pixel sizes (Å) are the same: within :data:`PIXEL_SIZE_RTOL` of the larger.

    The one rule every face applies (volume vs particles, two maps, a model vs its particles,
    a STAR file vs a pixel size given on the command line, the inputs of a consensus).
    """
    a_a, b_a = float(a_a), float(b_a)
    return abs(a_a - b_a) <= PIXEL_SIZE_RTOL * max(abs(a_a), abs(b_a))


def check_pixel_sizes(pixels, names, pixel_size_a=None) -> None:
    """ValueError naming the first map whose pixel size (None: unknown, not checked) is not
    :func:`same_pixel_size` as the particles' ``pixel_size_a`` or as the first known map's:
    the one message of the rule (the alignment, the class maps, the command line)."""
    known = [(p, n) for p, n in zip(pixels, names) if p is not None]
    if pixel_size_a is not None:
        for pixel, name in known:
            if not same_pixel_size(pixel, pixel_size_a):
                raise ValueError(f"{name}: pixel size {pixel:g} A differs from the "
                                 f"particles' {pixel_size_a:g} A")
    for pixel, name in known[1:]:
        if not same_pixel_size(pixel, known[0][0]):
            raise ValueError(f"{name}: pixel size {pixel:g} A differs from {known[0][1]}'s "
                             f"{known[0][0]:g} A (every class map needs the same pixel size)")


#: the training defaults, one per :class:`~scipion_deepalign.core.cnn.config.TrainConfig`
#: field (its fields read them here); the measurements that chose the schedule (epochs,
#: images per epoch, noise ramp, patience) are in docs/benchmarks_cnn.md
TRAIN_DEFAULTS = {
    "pixel_size_a": None, "target_resolution_a": None, "target_box_px": None,
    "training_source": "projections", "epochs": 20, "batch_size": 128,
    "images_per_epoch": 8192, "positives_per_region": 10000, "network": "shared",
    "head": "softmax", "class_output": "joint", "trunk": "polar", "label_softness": 0.4,
    "particle_fraction": 0.25,
    "noise_ramp_epochs": 3, "loss": "bce", "learning_rate": 0.002, "validation_fraction": 0.1,
    "patience": 3, "max_shift_fraction": 0.05, "seed": 0, "min_particles_per_region": 10,
}


def train_default(name: str):
    """Default of the :class:`~scipion_deepalign.core.cnn.config.TrainConfig` field ``name``
    (:data:`TRAIN_DEFAULTS`; KeyError naming it if unknown)."""
    try:
        return TRAIN_DEFAULTS[name]
    except KeyError:
        raise KeyError(f"TrainConfig has no field {name!r}") from None


def default_max_shift_px(box_px: int) -> float:
    """Largest shift searched when none is given: :data:`MAX_SHIFT_BOX_FRACTION` of the box."""
    return float(box_px) * MAX_SHIFT_BOX_FRACTION


def mask_radius_or_default_px(box_px: int, mask_radius_px=None) -> float:
    """The particle's radius in pixels: ``mask_radius_px`` when given, else
    :data:`PARTICLE_RADIUS_BOX_FRACTION` of the box."""
    if mask_radius_px is None:
        return float(box_px) * PARTICLE_RADIUS_BOX_FRACTION
    return float(mask_radius_px)


#: ``--target-resolution`` of every face (``deepalign train``, ``run``, ``align`` and the
#: Train, Align and Refine forms): "auto" searches at the resolution the reference supports
#: and refines finer (core/resolution.py), and trains the network on its measured input box;
#: FULL_RESOLUTION ("full", or 0) keeps the full box; or a number of Angstrom
TARGET_RESOLUTION = "auto"
FULL_RESOLUTION = "full"

# --- classes: deepalign classify (core/classes/iterate.py) --------------------------------
#: most iterations of a classification (it stops earlier by CLASSIFY_STOP_FRACTION)
CLASSIFY_ITERATIONS = 10
#: a classification stops once fewer than this fraction of the particles change class
CLASSIFY_STOP_FRACTION = 0.01
#: the next references are the class maps low-passed where their half maps' FSC falls below
#: this: 0.5, not 0.143, because both halves are aligned against one shared reference (not
#: independently), so their FSC is inflated by that reference's noise
CLASSIFY_FILTER_FSC = 0.5
#: deepalign classify --cnn: epochs each iteration after the network's first fine-tunes it
#: for, from the previous iteration's weights, on projections of the new class maps (few: the
#: maps change little between iterations, and training is the network path's main cost;
#: not measured beyond the tests' phantom pair, where 2 keep the classes right)
CLASSIFY_FINETUNE_EPOCHS = 2
#: deepalign classify --classes K (one map): how the first classes are drawn: "variance" (the
#: residuals' 3D covariance, core/classes/split.py) or "random" (RELION's start); measured in
#: docs/benchmarks_classes.md ("From one map")
CLASSIFY_START = "variance"
CLASSIFY_STARTS = ("variance", "random")
#: the variance split compares the residuals up to this resolution (Angstrom) ...
CLASSIFY_SPLIT_RESOLUTION = 30.0
#: ... for at most this many power iterations
CLASSIFY_SPLIT_ITERATIONS = 40
#: classes from one map, without a focus mask: after the first classes, the particles are
#: compared with maps that share the class maps' mean and differ only where they differ
#: most, this fraction of the box's voxels (class_maps.difference_focus): against the whole
#: maps the hard assignment keeps the first split's classes; measured on the benchmark's
#: three mixtures (docs/benchmarks_classes.md, "From one map")
CLASSIFY_FOCUS_FRACTION = 0.02
__all__ += ["CLASSIFY_ITERATIONS", "CLASSIFY_STOP_FRACTION", "CLASSIFY_FILTER_FSC",
            "CLASSIFY_FINETUNE_EPOCHS", "CLASSIFY_START", "CLASSIFY_STARTS",
            "CLASSIFY_SPLIT_RESOLUTION", "CLASSIFY_SPLIT_ITERATIONS", "CLASSIFY_FOCUS_FRACTION"]

# --- classes: deepalign run with several maps (core/cnn/joint.py) ----------------------------
#: the class prior the (class, region) pairs are chosen under: the uniform one the network of
#: K maps was trained with, or the classes' fractions estimated from its outputs
#: (estimate_class_fractions; always estimated and reported)
CLASS_PRIORS = ("uniform", "estimated")
#: uniform, measured: the network's class output is not calibrated on particles (tests'
#: phantom pair, 8-epoch network: mean class probability 0.64 / 0.36 on a 51 / 49 set), the
#: estimate amplifies that bias (0.80 / 0.20) and the search in the reweighted pairs classes
#: 0.79 of the particles right instead of 0.90 (0.85 instead of 0.94 on a 79 / 21 set)
CLASS_PRIOR = "uniform"
#: after each class's search, decide the class by every map at one pose, the best search
#: score's (classes/common_pose.py): measured on the benchmark's mixtures, +1.1 to +1.3
#: points of balanced accuracy over the best score of each class's own search
#: (docs/benchmarks_classes.md, "One pose for every class")
CLASS_COMMON_POSE = True
#: how several classes' poses are searched (classes/mean_map.py): "each" class's map in its
#: own search (K searches, or the predicted pairs'), one search against the classes' "mean"
#: map (the classes ranked at its pose, the pose then searched in the best classes' maps in
#: that pose's region), or "auto": the mean map where every pair of references correlates at
#: least CLASS_MEAN_MIN_CORRELATION. auto, measured on bench_classes's three conditions and
#: K = 1/2/4: balanced accuracy within 0.5 point of "each" everywhere (-0.5 at K = 4), 15-30 %
#: less time, comparisons a particle flat in K (10 692 / 10 799 for K = 2 / 4, each 12 946 /
#: 27 336) (docs/benchmarks_classes.md, "One search for every class")
CLASS_SEARCHES = ("each", "mean", "auto")
CLASS_SEARCH = "auto"
CLASS_MEAN_MIN_CORRELATION = 0.9
#: with the mean map, the pose is searched again in the maps of this many classes, those that
#: correlate best with the particle at the mean map's pose (docs/benchmarks_classes.md, "One
#: search for every class")
CLASS_MEAN_SECOND_CLASSES = 2
__all__ += ["CLASS_PRIORS", "CLASS_PRIOR", "CLASS_COMMON_POSE", "CLASS_SEARCHES", "CLASS_SEARCH",
            "CLASS_MEAN_MIN_CORRELATION", "CLASS_MEAN_SECOND_CLASSES"]
