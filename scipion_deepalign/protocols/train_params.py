"""The training section of a form (train and refine protocols): parameters and their help.

Defaults come from the core's ``TrainConfig`` and :mod:`~scipion_deepalign.core.defaults`,
so the form and ``deepalign train`` cannot differ (``tests/scipion/test_forms.py``).
"""
import pyworkflow.protocol.params as params

from .. import constants as cts
from ..core import defaults
from ..core.cnn.config import DEFAULT_INPUT_BOX_PX
from ..core.regions import MAX_SPACING_DEG, MIN_SPACING_DEG
from .protocol_base import core_choice

__all__ = ["define_train_params"]


def define_train_params(form, *, condition=None):
    """Training parameters; defaults from the core's ``TrainConfig`` and ``defaults``.

    Parameters that only the regional network uses carry a condition on ``networkKind``
    (joined with ``condition``, the refine protocol's ``trainModel``).
    """
    regional = _both(condition, f"networkKind == {cts.REGIONAL}")
    shared = _both(condition, f"networkKind != {cts.REGIONAL}")
    form.addParam("trainingSource", params.EnumParam, condition=condition,
                  default=defaults.TRAINING_SOURCES.index(
                      defaults.train_default("training_source")),
                  choices=list(defaults.TRAINING_SOURCES), label="Train from",
                  help="projections (default): labelled images made from the reference "
                       "volume for every batch, at random angles, with the particles' own "
                       "CTFs and their measured noise; no pre-aligned subset is needed. "
                       "particles: the pre-aligned training particles (the paper's way; "
                       "their angles may be partly wrong). both: each batch mixes "
                       "projections with pre-aligned particles. Measured in "
                       "docs/benchmarks_accuracy.md.")
    form.addParam("regionSpacingDeg", params.FloatParam, default=defaults.REGION_SPACING_DEG,
                  condition=condition, label="Region spacing (deg)",
                  help="Angular distance between neighbouring region centres on the "
                       "projection sphere; the network learns which region a particle "
                       "comes from (the shared network has one output per region, the "
                       "regional networks one classifier each). 30 deg gives 42 regions "
                       f"for c1; fewer with symmetry. Allowed: {MIN_SPACING_DEG:g} to "
                       f"{MAX_SPACING_DEG:g} deg.")
    form.addParam("targetResolutionA", params.StringParam,
                  default=defaults.TARGET_RESOLUTION, condition=condition,
                  label="Target resolution (Å)",
                  help="Particles are Fourier-cropped so that Nyquist reaches this "
                       "resolution (smaller images, faster training). "
                       f"{defaults.TARGET_RESOLUTION} (default): the network's measured "
                       f"input box ({DEFAULT_INPUT_BOX_PX} px, or the particle box when "
                       f"smaller); {defaults.FULL_RESOLUTION} (or 0): the full box; or a "
                       "resolution in Å, at least twice the pixel size. The wizard shows "
                       "the box it gives.")
    form.addParam("numberOfEpochs", params.IntParam, default=defaults.train_default("epochs"),
                  condition=condition, label="Max epochs",
                  help="Maximum passes over the training data per network; training stops "
                       "earlier when the held-out region hit rate (shared network: the share "
                       "of held-out images whose true region is among those the search "
                       "takes) or the validation loss (regional networks) has not improved "
                       "for a few epochs (the best weights are kept).")
    _network_params(form, condition, shared)
    _schedule_params(form, condition, shared, regional)


def _network_params(form, condition, shared):
    network = form.addGroup("Network", condition=condition,
                            expertLevel=params.LEVEL_ADVANCED)
    network.addParam("networkKind", params.EnumParam,
                     default=cts.NETWORK_KINDS.index(defaults.train_default("network")),
                     condition=condition, choices=list(cts.NETWORK_KINDS),
                     expertLevel=params.LEVEL_ADVANCED, label="Network",
                     help="shared (default): one network with a shared trunk and one "
                          "output per region, the more accurate and faster to train in our "
                          "benchmarks; regional: one binary classifier per region (the "
                          "paper's), trained in parallel steps, one per GPU.")
    network.addParam("lossFunction", params.EnumParam,
                     default=defaults.LOSSES.index(defaults.train_default("loss")),
                     condition=condition, choices=cts.LOSS_CHOICES,
                     expertLevel=params.LEVEL_ADVANCED, label="Loss",
                     help="Binary cross-entropy (default) gave the better region accuracy; "
                          "mean absolute error is what Xmipp's code used and does not train "
                          "the shared network.")
    network.addParam("learningRate", params.FloatParam,
                     default=defaults.train_default("learning_rate"), condition=condition,
                     expertLevel=params.LEVEL_ADVANCED, label="Learning rate",
                     help="Step size of the Adam optimiser (the paper's 0.002 by default; "
                          "Xmipp's code used 0.001).")
    core_choice(network, "networkHead", defaults.HEADS, defaults.train_default("head"),
                condition=shared, label="Output of the shared network",
                help="softmax: one probability distribution over the regions, trained "
                     "with labels softened towards neighbouring regions (calibrated "
                     "probabilities); sigmoid: one independent probability per region.")
    core_choice(network, "networkTrunk", defaults.TRUNKS, defaults.train_default("trunk"),
                condition=shared, label="Convolutions of the shared network",
                help="polar (default): convolutions on the image resampled on rings, "
                     "invariant to the in-plane rotation by construction; cartesian: the "
                     "paper's convolutions on the image, which learn every in-plane "
                     "rotation of every view (see docs/benchmarks_accuracy.md).")
    network.addParam("labelSoftness", params.FloatParam,
                     default=defaults.train_default("label_softness"), condition=shared,
                     expertLevel=params.LEVEL_ADVANCED, label="Label softness",
                     help="Width of the softened labels of the softmax output, as a "
                          "fraction of the region spacing (0: one-hot labels).")


def _schedule_params(form, condition, shared, regional):
    schedule = form.addGroup("Training schedule", condition=condition,
                             expertLevel=params.LEVEL_ADVANCED)
    schedule.addParam("imagesPerEpoch", params.IntParam,
                      default=defaults.train_default("images_per_epoch"), condition=shared,
                      expertLevel=params.LEVEL_ADVANCED, label="Images per epoch",
                      help="Training images of the shared network per epoch (new "
                           "projections, or augmented particles).")
    schedule.addParam("noiseRampEpochs", params.IntParam,
                      default=defaults.train_default("noise_ramp_epochs"),
                      condition=_both(shared, "trainingSource != "
                                      f"{defaults.TRAINING_SOURCES.index('particles')}"),
                      expertLevel=params.LEVEL_ADVANCED, label="Noise curriculum (epochs)",
                      help="Training from projections: their noise starts at a tenth of the "
                           "particles' and grows to all of it over this many epochs, which "
                           "lets the network leave chance at low SNR; early stopping waits "
                           "for it. 0: the particles' noise from the start.")
    schedule.addParam("batchSize", params.IntParam,
                      default=defaults.train_default("batch_size"), condition=condition,
                      expertLevel=params.LEVEL_ADVANCED, label="Batch size",
                      help="Images per training batch (regional networks: half from the "
                           "region, half from elsewhere). Lower it if the GPU runs out of "
                           "memory.")
    schedule.addParam("positivesPerRegion", params.IntParam,
                      default=defaults.train_default("positives_per_region"),
                      condition=regional, expertLevel=params.LEVEL_ADVANCED,
                      label="Augmented positives per region",
                      help="Regional networks only: rotated/shifted copies of a region's "
                           "particles seen per epoch (as many negatives), so an epoch costs "
                           "the same whatever the number of training particles (the shared "
                           "network uses Images per epoch).")
    schedule.addParam("minParticlesPerRegion", params.IntParam,
                      default=defaults.train_default("min_particles_per_region"),
                      condition=regional, expertLevel=params.LEVEL_ADVANCED,
                      label="Min particles per region",
                      help="Regional networks only: regions with fewer training particles "
                           "get no network (their probability is 0 at prediction).")
    schedule.addParam("regionsPerStep", params.IntParam, default=1, condition=regional,
                      expertLevel=params.LEVEL_ADVANCED, label="Regions per step",
                      help="Regional networks only: regions trained by one step (one "
                           "process, one GPU). 1 spreads the work most; more saves process "
                           "start-up time.")


def _both(*conditions):
    """``"a and b"`` of the conditions that are not None (None when none is)."""
    given = [f"({c})" for c in conditions if c]
    return " and ".join(given) or None
