"""The joint class x region output of a network trained from K reference maps (issue 25).

Layout (the one place it is written): a network of K classes and R regions has ``K * R``
outputs; output ``k * R + r`` is the probability that the particle is of class ``k`` (the
``k``-th map, 0-based) **and** its direction lies in region ``r``. With K = 1 this is the
region softmax of every single-map model, unchanged. The outputs are one softmax over the
``K * R`` pairs (``class_output="joint"``), or the product ``p(k) p(r)`` of a class softmax
and a region softmax on the same trunk (``"head"``, :func:`~.model.build_shared_model`,
trained with the class plus the region cross-entropy): everything here reads both alike.

Training (:class:`ClassProjectionSource`, :class:`ClassProjectionBatches`): every image draws
its class uniformly, then a pose, CTF, shift and noise as a single map's projections do
(:class:`~.synthetic.ProjectionSource`); the target is the region target (softened as
``label_softness`` says, :func:`~.data.region_targets`) placed in the block of its class,
zeros elsewhere (:func:`joint_targets`): soft over regions, hard over classes. The K maps'
projections share one signal scale (:meth:`ClassProjectionSource.from_sources`), so a map of
less mass gives weaker images, as its particles are.

Prediction (:func:`split_joint`, :func:`class_probabilities`, :func:`region_marginal`,
:func:`select_pairs`): a class's probability is the sum over its regions; a region's the sum
over the classes; the (class, region) pairs a particle is searched in are its most probable
ones until their probabilities reach the search's probability mass, as regions are for a
single map (:func:`~..align.search_plan.select_regions`, the same rule). :func:`top_pairs`
gives each particle's best pairs as ``deepalign predict`` and ``run`` write them to STAR;
:func:`search_top_pairs` applies the same rule to them (``deepalign align --model``).

Class fractions (:func:`estimate_class_fractions`): the network learnt its classes drawn
uniformly, so its outputs are posteriors under a prior of ``1/K`` per class, while a data set
holds its classes in its own proportions. ``deepalign run`` estimates those proportions
from the outputs themselves (reported beside the fractions the alignment assigns; the pairs'
prior with ``--class-prior estimated``) by the EM prior adjustment of
Saerens, Latinne & Decaestecker (2002, "Adjusting the outputs of a classifier to new a priori
probabilities", Neural Computation 14:21-41): each particle's joint probabilities
``p(k, r | x)`` are weighted by ``pi_k / (1/K)`` and renormalised, the fractions ``pi`` become
the mean class probability of the reweighted outputs, and the two steps repeat until the
fractions change by less than :data:`CLASS_FRACTION_TOLERANCE` (at most
:data:`CLASS_FRACTION_MAX_ITERATIONS` times). The fixed point maximises the likelihood of the
data under a mixture of the classes; the regions within a class keep their relative
probabilities, and with the data's fractions uniform the outputs barely change. The EM
assumes the outputs calibrated on the particles: where they lean to one class on all
particles alike (a network trained on projections, used on particles), it amplifies that
lean (measured: :data:`~..defaults.CLASS_PRIOR`).

"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .data import ProjectionBatches, mask_images, normalise_input, region_targets
from .synthetic import noise_ramp_scale

__all__ = ["joint_targets", "split_joint", "class_probabilities", "region_marginal",
           "estimate_class_fractions", "CLASS_FRACTION_TOLERANCE",
           "CLASS_FRACTION_MAX_ITERATIONS", "ClassPairs", "top_pairs", "select_pairs",
           "search_pairs", "search_top_pairs",
           "ClassProjectionSource", "ClassProjectionBatches"]

log = logging.getLogger(__name__)

#: the EM estimate of the class fractions stops once no fraction changes by more than this
CLASS_FRACTION_TOLERANCE = 1e-6
#: ... or after this many iterations (an uninformative classifier converges slowly)
CLASS_FRACTION_MAX_ITERATIONS = 1000


def joint_targets(targets, classes, n_classes: int) -> np.ndarray:
    """Region targets placed in the block of each image's class.

    Parameters
    ----------
    targets : ndarray of shape (N, R)
        Region targets (one-hot or softened).
    classes : int ndarray of shape (N,)
        0-based class of each image.
    n_classes : int

    Returns
    -------
    ndarray of shape (N, K * R) float32
        Row ``i`` holds ``targets[i]`` in columns ``classes[i] * R + r``.
    """
    targets = np.asarray(targets, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    n, r = targets.shape
    out = np.zeros((n, int(n_classes), r), np.float32)
    out[np.arange(n), classes] = targets
    return out.reshape(n, int(n_classes) * r)


def split_joint(probabilities, n_classes: int) -> np.ndarray:
    """The joint output as ``(N, K, R)`` (ValueError when its width is not a multiple of K)."""
    probabilities = np.asarray(probabilities)
    n, width = probabilities.shape
    if int(n_classes) < 1 or width % int(n_classes):
        raise ValueError(f"{width} outputs cannot be {n_classes} classes of equal regions")
    return probabilities.reshape(n, int(n_classes), width // int(n_classes))


def class_probabilities(probabilities, n_classes: int) -> np.ndarray:
    """Each class's probability, the sum over its regions: ``(N, K)``."""
    return split_joint(probabilities, n_classes).sum(axis=2)


def region_marginal(probabilities, n_classes: int) -> np.ndarray:
    """Each region's probability, the sum over the classes: ``(N, R)``."""
    return split_joint(probabilities, n_classes).sum(axis=1)


def estimate_class_fractions(probabilities, n_classes: int):
    """The classes' fractions in the data, and the outputs under them (module docstring).

    Parameters
    ----------
    probabilities : ndarray of shape (N, K * R)
        The network's joint output (:func:`~.predict.predict_probabilities`), posteriors
        under the uniform class prior it was trained with; each row sums to 1.
    n_classes : int
        K.

    Returns
    -------
    fractions : ndarray of shape (K,)
        The estimated fraction of the particles in each class (sums to 1).
    adjusted : ndarray of shape (N, K * R)
        ``probabilities`` with class ``k``'s block weighted by ``K * fractions[k]``, each row
        renormalised to sum to 1 (the layout of the input).

    Raises
    ------
    ValueError
        When the width is not K blocks (:func:`split_joint`), or a probability is negative
        or not finite, or a particle's probabilities sum to 0.

    Notes
    -----
    The EM of Saerens et al. (2002), iterated on the class probabilities (the sums over
    each class's regions) until :data:`CLASS_FRACTION_TOLERANCE` or
    :data:`CLASS_FRACTION_MAX_ITERATIONS` (a warning then). With K = 1: ``[1.0]`` and the
    rows renormalised.
    """
    joint = split_joint(probabilities, n_classes).astype(np.float64)
    if not np.all(np.isfinite(joint)) or np.any(joint < 0):
        raise ValueError("probabilities must be finite and non-negative")
    posterior = joint.sum(axis=2)  # (N, K): the classes under the uniform prior
    totals = posterior.sum(axis=1, keepdims=True)
    if np.any(totals <= 0):
        raise ValueError(f"probabilities of {int(np.sum(totals <= 0))} particle(s) sum to 0")
    posterior /= totals
    k = posterior.shape[1]
    fractions = np.full(k, 1.0 / k)
    iterations, change = 0, np.inf
    while len(posterior) and change >= CLASS_FRACTION_TOLERANCE:
        if iterations == CLASS_FRACTION_MAX_ITERATIONS:
            log.warning("the class fractions changed by %.2g in the last of %d iterations "
                        "(tolerance %g): the classifier tells the classes apart too little "
                        "for a firm estimate", change, iterations, CLASS_FRACTION_TOLERANCE)
            break
        weighted = posterior * (fractions * k)
        weighted /= weighted.sum(axis=1, keepdims=True)
        new = weighted.mean(axis=0)
        change, fractions, iterations = float(np.max(np.abs(new - fractions))), new, iterations + 1
    if len(posterior):
        log.info("class fractions estimated from the network's outputs in %d iterations: "
                 "%s (the mean class probability: %s)", iterations,
                 ", ".join(f"{f:.3f}" for f in fractions),
                 ", ".join(f"{f:.3f}" for f in posterior.mean(axis=0)))
    adjusted = joint * (fractions * k)[None, :, None]
    adjusted /= adjusted.sum(axis=(1, 2), keepdims=True)
    return fractions, adjusted.reshape(len(adjusted), -1)


@dataclass
class ClassPairs:
    """The (class, region) pairs each particle is searched in, best first.

    Attributes
    ----------
    classes, regions : int ndarray of shape (N, m)
        0-based; -1 after a particle's last pair.
    probabilities : ndarray of shape (N, m)
        Joint probabilities of the pairs (0 after the last).
    class_probabilities : ndarray of shape (N, K)
        Each class's probability (:func:`class_probabilities`).
    """

    classes: np.ndarray
    regions: np.ndarray
    probabilities: np.ndarray
    class_probabilities: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(self.class_probabilities.shape[1])

    def members(self, k: int):
        """``(rows, hints, probabilities)`` of class ``k``: the particles with a pair of
        class ``k``, and their regions of that class (best first, each row padded with its
        first region, probability 0)."""
        mine = self.classes == int(k)
        rows = np.flatnonzero(mine.any(axis=1))
        mine = mine[rows]
        width = max(1, int(mine.sum(axis=1).max())) if len(rows) else 1
        order = np.argsort(~mine, axis=1, kind="stable")[:, :width]  # class-k pairs first
        hints = np.take_along_axis(self.regions[rows], order, axis=1)
        probs = np.take_along_axis(self.probabilities[rows], order, axis=1)
        kept = np.take_along_axis(mine, order, axis=1)
        hints = np.where(kept, hints, hints[:, :1])
        return rows, hints, np.where(kept, probs, 0.0)


def top_pairs(probabilities, n_classes: int, k: int):
    """Each particle's ``k`` most probable (class, region) pairs, best first.

    Parameters
    ----------
    probabilities : ndarray of shape (N, K * R)
        The network's joint output (:func:`~.predict.predict_probabilities`).
    n_classes : int
    k : int
        Pairs kept (at most ``K * R``).

    Returns
    -------
    classes, regions : int ndarray of shape (N, k)
        0-based.
    probabilities : ndarray of shape (N, k)
        Their joint probabilities, non-increasing along each row (what ``deepalign predict``
        writes, :func:`~..io.columns.set_pair_columns`).
    """
    from .predict import top_k_regions

    joint = split_joint(probabilities, n_classes)
    flat = joint.reshape(len(joint), -1)
    order, probs = top_k_regions(flat, min(int(k), flat.shape[1]))
    return order // joint.shape[2], order % joint.shape[2], probs


def select_pairs(probabilities, n_classes: int, *, probability_mass=None,
                 max_pairs=None) -> ClassPairs:
    """Each particle's most probable (class, region) pairs (module docstring).

    Parameters
    ----------
    probabilities : ndarray of shape (N, K * R)
        The network's joint output (:func:`~.predict.predict_probabilities`).
    n_classes : int
    probability_mass : float in (0, 1], optional
        Pairs are kept, best first, until their probabilities reach it (the search's
        ``SearchOptions.probability_mass``); None: ``max_pairs`` pairs.
    max_pairs : int, optional
        At most this many pairs (``SearchOptions.max_regions``); None: the search's default.

    Returns
    -------
    ClassPairs
    """
    joint = split_joint(probabilities, n_classes)
    k = _pair_limit(joint.shape[1] * joint.shape[2], max_pairs)
    classes, regions, probs = top_pairs(probabilities, n_classes, k)
    return _keep_pairs(classes, regions, probs, joint.sum(axis=2),
                       probability_mass=probability_mass, max_pairs=k)


def _pair_limit(width: int, max_pairs) -> int:
    """How many of ``width`` best pairs :func:`select_pairs` considers."""
    from ..align.search_plan import SearchOptions

    limit = SearchOptions.default("max_regions") if max_pairs is None else max_pairs
    return min(int(width), int(limit or width))


def _keep_pairs(classes, regions, probs, class_probs, *, probability_mass,
                max_pairs) -> ClassPairs:
    """The rule: of the best pairs (best first), those :func:`~..align.search_plan.
    select_regions` keeps (the probability mass, at most ``max_pairs``)."""
    from ..align.search_plan import select_regions

    classes, regions = np.asarray(classes, np.int64), np.asarray(regions, np.int64)
    probs = np.asarray(probs, np.float64)
    index = np.where(classes >= 0, np.arange(classes.shape[1])[None, :], -1)
    kept = select_regions(index, probs, probability_mass=probability_mass,
                          top_k=None if probability_mass else max_pairs,
                          max_regions=max_pairs) >= 0
    return ClassPairs(classes=np.where(kept, classes, -1),
                      regions=np.where(kept, regions, -1),
                      probabilities=np.where(kept, probs, 0.0),
                      class_probabilities=class_probs)


def _search_rule(search, top_k):
    """``(probability_mass, max_pairs)`` of the search: its mass and most regions, or the
    ``top_k`` best pairs where it has no mass."""
    from ..align.search_plan import SearchOptions

    search = search or SearchOptions()
    mass = search.probability_mass
    return mass, (search.max_regions if mass else top_k)


def search_pairs(probabilities, n_classes: int, search=None, *, top_k: int) -> ClassPairs:
    """The (class, region) pairs the search takes: :func:`select_pairs` with ``search``'s
    probability mass and most regions, or the ``top_k`` best pairs where the search has no
    mass (``search`` None: the default :class:`~..align.search_plan.SearchOptions`). The one
    rule of ``deepalign run``, ``deepalign align --model`` (:func:`search_top_pairs`) and
    ``classify --cnn``."""
    mass, max_pairs = _search_rule(search, top_k)
    return select_pairs(probabilities, n_classes, probability_mass=mass, max_pairs=max_pairs)


def search_top_pairs(classes, regions, probabilities, n_classes: int, search=None, *,
                     top_k=None) -> ClassPairs:
    """:func:`search_pairs` from each particle's best pairs as written (:func:`top_pairs`,
    the pair columns of ``deepalign predict``) instead of the whole output.

    The same pairs as :func:`search_pairs` on the output they came from whenever they hold at
    least as many pairs as the rule considers (``search.max_regions`` with a probability mass,
    else ``top_k``); fewer limit the search to them.

    Parameters
    ----------
    classes, regions : int ndarray of shape (N, m)
        0-based, best first.
    probabilities : ndarray of shape (N, m)
        Their joint probabilities.
    n_classes : int
        K (classes may lack pairs in every row).
    search : SearchOptions, optional
    top_k : int, optional
        Pairs kept where the search has no probability mass; default all ``m``.

    Returns
    -------
    ClassPairs
        ``class_probabilities`` holds each class's probability summed over the given pairs
        only (a lower bound of the network's).
    """
    classes = np.asarray(classes, np.int64)
    probs = np.asarray(probabilities, np.float64)
    if classes.ndim != 2 or classes.shape != np.shape(regions) or classes.shape != probs.shape:
        raise ValueError(f"pairs must be three (N, m) arrays, got {classes.shape}, "
                         f"{np.shape(regions)} and {probs.shape}")
    if classes.size and (classes.min() < 0 or classes.max() >= int(n_classes)):
        raise ValueError(f"pair classes must be in 0..{int(n_classes) - 1}, got "
                         f"{classes.min()}..{classes.max()}")
    mass, max_pairs = _search_rule(search, top_k)
    k = _pair_limit(classes.shape[1], max_pairs)
    class_probs = np.zeros((len(classes), int(n_classes)))
    np.add.at(class_probs, (np.arange(len(classes))[:, None], classes), probs)
    return _keep_pairs(classes[:, :k], np.asarray(regions, np.int64)[:, :k], probs[:, :k],
                       class_probs, probability_mass=mass, max_pairs=k)


class ClassProjectionSource:
    """Projections of K maps, the class of each image drawn uniformly (module docstring).

    Parameters
    ----------
    sources : sequence of ProjectionSource
        One per class, built alike (:class:`~.synthetic.ProjectionSource`); their signal
        scales are replaced by one common scale (:meth:`from_sources`).
    """

    def __init__(self, sources):
        self.sources = list(sources)
        if len(self.sources) < 2:
            raise ValueError("a class source needs at least two maps")
        # each source's scale matches the particles' signal variance alone; one common
        # scale, the harmonic mean of their squares, keeps the maps' relative strength
        inverse = [1.0 / s.scale ** 2 for s in self.sources if s.scale > 0]
        common = float(np.sqrt(len(inverse) / sum(inverse))) if inverse else 0.0
        for source in self.sources:
            source.scale = common
        first = self.sources[0]
        self.box, self.noise = first.box, first.noise

    @property
    def n_classes(self) -> int:
        return len(self.sources)

    def draw(self, rng: np.random.Generator, n: int, *, noise_scale: float = 1.0):
        """``n`` images (classes uniform), their poses and 0-based classes."""
        classes = rng.integers(0, self.n_classes, int(n))
        images = np.empty((int(n), self.box, self.box), np.float32)
        angles = np.empty((int(n), 3))
        for k in range(self.n_classes):
            rows = np.flatnonzero(classes == k)
            if len(rows):
                images[rows], angles[rows] = self.sources[k].draw(rng, len(rows),
                                                                  noise_scale=noise_scale)
        return images, angles, classes


class ClassProjectionBatches(ProjectionBatches):
    """:class:`~.data.ProjectionBatches` of a :class:`ClassProjectionSource`: joint targets
    (:func:`joint_targets`); projections only (no aligned particles mixed in).

    Parameters
    ----------
    source : ClassProjectionSource
    centres_deg, symmetry, **options
        As :class:`~.data.ProjectionBatches` (``particles`` refused).
    """

    def __init__(self, source, centres_deg, symmetry, **options):
        if options.get("particles") is not None:
            raise ValueError("training from several maps takes projections only, not "
                             "particles")
        super().__init__(source, centres_deg, symmetry, **options)

    def __getitem__(self, index):
        rng = self._rng(index)
        images, angles, classes = self.source.draw(
            rng, self.batch_size, noise_scale=noise_ramp_scale(self.epoch,
                                                               self.noise_ramp_epochs))
        targets = region_targets(angles, self.centres, self.symmetry,
                                 label_sigma_deg=self.label_sigma_deg)
        return (mask_images(normalise_input(images)),
                joint_targets(targets, classes, self.source.n_classes))
