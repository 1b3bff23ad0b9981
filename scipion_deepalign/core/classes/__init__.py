"""Several reference maps, one class per particle (issue 25).

``references.py`` checks K maps against each other and puts them on one scale;
``assign.py`` aligns the particles against each map with the one search engine
(:func:`~..align.align.align_particles`) and keeps the class of the best score;
``regional.py`` searches each particle in its predicted (class, region) pairs only (a
network of K classes, :mod:`..cnn.joint`); ``iterate.py`` classifies by iteration
(``deepalign classify``), globally or, with ``network.py``, in the pairs of a network
trained on the class maps and fine-tuned on each iteration's new maps; ``mixture.py``
simulates particles of several maps at known poses and classes.
"""
from .assign import ClassAlignment, align_classes, pick_classes
from .mixture import simulate_mixture
from .network import ClassNetwork
from .references import class_references
from .regional import align_class_pairs

__all__ = ["ClassAlignment", "ClassNetwork", "align_classes", "align_class_pairs", "pick_classes",
           "simulate_mixture", "class_references"]
