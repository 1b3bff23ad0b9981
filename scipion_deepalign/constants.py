"""Constants shared by the Scipion layer of the plugin (the core never imports this)."""
from .core import defaults

#: key of the DeepAlign citation in :mod:`scipion_deepalign.bibtex`
CITE_DEEPALIGN = "JimenezMoreno2021"

#: short name of the plugin: the prefix of protocol labels ("deepalign - train") in the GUI
PLUGIN_NAME = "deepalign"

#: environment variable naming the Python interpreter that runs ``deepalign`` commands
DEEPALIGN_PYTHON = "DEEPALIGN_PYTHON"

#: network kinds offered by the training form, in the order of the form's choices (the
#: index is what a project stores: never reorder)
NETWORK_KINDS = defaults.NETWORKS
#: index of the regional network in :data:`NETWORK_KINDS` (for form conditions)
REGIONAL = NETWORK_KINDS.index("regional")
#: what the training form shows for each of the core's losses (``defaults.LOSSES`` order): the
#: one place where the GUI words meet the core's names
LOSS_LABELS = {"bce": "binary cross-entropy", "mae": "mean absolute error (Xmipp)"}
LOSS_CHOICES = [LOSS_LABELS[name] for name in defaults.LOSSES]
#: options of every ``deepalign`` command a protocol step runs: progress lines every 5 % on
#: stdout, so that the step's log (run.stdout) shows them and run.stderr keeps the errors
STEP_LOG_OPTIONS = ("--progress-every", "5", "--log-stdout")

#: names of the per-particle attributes written on output items
REGION_ATTR = "_deepalign_region%d"
REGION_PROB_ATTR = "_deepalign_regionProb%d"
SCORE_ATTR = "_deepalign_score"
SIGNIFICANCE_ATTR = "_deepalign_significance"
