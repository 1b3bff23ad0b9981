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

Prediction (:func:`split_joint`, :func:`class_probabilities`, :func:`region_marginal`): a
class's probability is the sum over its regions; a region's the sum over the classes; the
(class, region) pairs a particle is searched in are chosen in :mod:`.pairs`.

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

import numpy as np

from .data import ProjectionBatches, mask_images, normalise_input, region_targets
from .synthetic import noise_ramp_scale

__all__ = ["joint_targets", "split_joint", "class_probabilities", "region_marginal",
           "estimate_class_fractions", "CLASS_FRACTION_TOLERANCE",
           "CLASS_FRACTION_MAX_ITERATIONS", "ClassProjectionSource", "ClassProjectionBatches"]

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
