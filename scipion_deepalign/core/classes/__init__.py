"""Several reference maps, one class per particle (issue 25, first stage).

``references.py`` checks K maps against each other and puts them on one scale;
``assign.py`` aligns the particles against each map with the one search engine
(:func:`~..align.align.align_particles`) and keeps the class of the best score;
``mixture.py`` simulates particles of several maps at known poses and classes.
"""
from .assign import ClassAlignment, align_classes, pick_classes
from .mixture import simulate_mixture
from .references import class_references

__all__ = ["ClassAlignment", "align_classes", "pick_classes", "simulate_mixture",
           "class_references"]
