"""The 3D classes protocol's form (mixin of :class:`.protocol_classes.DeepAlignProtClasses3D`):
input particles and maps, the network's training, the alignment and the class search. Every
default is the core's (``core/defaults.py``), the one the ``deepalign`` commands show."""
import pyworkflow.protocol.params as params

from ..core import defaults
from .protocol_align_form import AlignForm
from .protocol_base import core_choice

__all__ = ["ClassesForm"]


class ClassesForm(AlignForm):
    """The form of the 3D classes protocol (its symmetry and compute rows from
    :class:`.protocol_base.DeepAlignProtBase`)."""

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      important=True, label="Particles",
                      help="Particles to classify; poses they may carry are replaced.")
        form.addParam("inputVolumes", params.MultiPointerParam,
                      pointerClass="Volume,SetOfVolumes", minNumObjects=1, important=True,
                      label="Reference volumes",
                      help="One map per class (volumes, or sets of volumes taken map by "
                           "map, in this order): class k is the k-th map; or one map and "
                           "\"Classes from one map\". Same box and pixel size as the "
                           "particles; each map is scaled to zero mean and unit deviation, so "
                           "maps of different mass compare fairly.")
        self._defineSymmetryParam(form)
        form.addParam("useNetwork", params.BooleanParam, default=True,
                      label="Train a network of the classes?",
                      help="Yes: one network learns class and region from projections of "
                           "every map; each particle is searched in its predicted (class, "
                           "region) pairs only. No: every particle is searched globally "
                           "against every map (K full searches: slower, no training), and "
                           "the class maps are reconstructed and searched again, iteration "
                           "after iteration (deepalign classify).")
        form.addParam("iterateNetwork", params.BooleanParam, default=False,
                      condition="useNetwork", label="Refine the classes by iterations?",
                      help="Yes: the network is trained on the reference maps in the first "
                           "iteration; each iteration searches each particle in its predicted "
                           "(class, region) pairs, reconstructs the class maps (low-passed at "
                           "their FSC "
                           f"{defaults.CLASSIFY_FILTER_FSC:g}) and fine-tunes the network on "
                           "projections of them for the next one (deepalign classify --cnn; "
                           "slower than one pass by the fine-tuning and the reconstructions). "
                           "No: one pass against the reference maps (deepalign run).")
        form.addParam("iterations", params.IntParam, condition="not useNetwork or iterateNetwork",
                      default=defaults.CLASSIFY_ITERATIONS, label="Iterations",
                      help="Most iterations of the classification (align against the class "
                           "maps, reconstruct them); it stops earlier once fewer than "
                           f"{100 * defaults.CLASSIFY_STOP_FRACTION:g} % of the particles "
                           "change class.")
        form.addParam("oneMapClasses", params.IntParam, default=2,
                      condition="not useNetwork", label="Classes from one map",
                      help="Used when one reference volume is given: this many classes, "
                           "all started from it; the first classes are drawn by how the "
                           "particles' differences from the map vary (the leading directions "
                           "of their 3D covariance; deepalign classify --classes K). Needs "
                           "\"Train a network of the classes?\" = No (the network learns "
                           "one map per class).")
        form.addParam("splitResolutionA", params.FloatParam, condition="not useNetwork",
                      default=defaults.CLASSIFY_SPLIT_RESOLUTION,
                      expertLevel=params.LEVEL_ADVANCED,
                      label="Split resolution from one map (Å)",
                      help="With one reference volume: the first classes are drawn by comparing "
                           "the particles' differences from the map up to this resolution "
                           "(finer for a small changing part; deepalign classify "
                           "--split-resolution).")
        form.addSection(label="Training")
        form.addParam("regionSpacingDeg", params.FloatParam, condition="useNetwork",
                      default=defaults.REGION_SPACING_DEG, label="Region spacing (deg)",
                      help="Angular distance between neighbouring region centres; the "
                           "network has one output per class and region.")
        form.addParam("numberOfEpochs", params.IntParam, condition="useNetwork",
                      default=defaults.train_default("epochs"), label="Max epochs",
                      help="Training stops earlier when the held-out hit rate of (class, "
                           "region) pairs stops improving. With iterations: the first "
                           "iteration's network.")
        form.addParam("finetuneEpochs", params.IntParam,
                      condition="useNetwork and iterateNetwork",
                      default=defaults.CLASSIFY_FINETUNE_EPOCHS,
                      expertLevel=params.LEVEL_ADVANCED, label="Fine-tuning epochs",
                      help="Epochs each iteration after the first fine-tunes the previous "
                           "iteration's network for, on projections of the new class maps "
                           "(deepalign classify --finetune-epochs).")
        form.addParam("imagesPerEpoch", params.IntParam, condition="useNetwork",
                      default=defaults.train_default("images_per_epoch"),
                      expertLevel=params.LEVEL_ADVANCED, label="Images per epoch",
                      help="Training projections per epoch (each draws its class uniformly).")
        core_choice(form, "classOutput", defaults.CLASS_OUTPUTS,
                    defaults.train_default("class_output"),
                    condition="useNetwork and not iterateNetwork",
                    label="Class output of the network",
                    help="joint (default): one softmax over every (class, region) pair; "
                         "head: a softmax over the classes beside the softmax over the "
                         "regions, on the same trunk, p(class, region) = p(class) "
                         "p(region) (deepalign run --class-output; one pass only: the "
                         "iterations train the joint one).")
        form.addSection(label="Alignment")
        self._defineAlignParams(form)
        self._defineRegionSearchParams(form, condition="useNetwork")
        core_choice(form, "classPrior", defaults.CLASS_PRIORS, defaults.CLASS_PRIOR,
                    condition="useNetwork and not iterateNetwork",
                    label="Class prior of the search",
                    help="The class prior each particle's (class, region) pairs are chosen "
                         "under: uniform (default), the network's outputs as trained "
                         "(classes drawn in equal numbers); estimated: reweighted by the "
                         "classes' fractions estimated from those outputs, which amplifies "
                         "a network that leans to one class (the estimate is always "
                         "reported in the log) (deepalign run --class-prior; one pass "
                         "only: the iterations search under the uniform one).")
        core_choice(form, "classSearch", defaults.CLASS_SEARCHES, defaults.CLASS_SEARCH,
                    label="Class search",
                    help="each: every particle searched in each class's map (or in each "
                         "predicted class's regions); mean: one search against the classes' "
                         "mean map, every map then compared with the particle at the pose "
                         "found and the pose searched again in the two best classes' maps in "
                         "that pose's region (about one search whatever the number of classes; "
                         "for maps that share most of their structure); auto: mean where "
                         "every two maps correlate at least "
                         f"{defaults.CLASS_MEAN_MIN_CORRELATION:g} "
                         "(deepalign run|classify --class-search).")
        self._defineComputeParams(form, threads=1)
