"""Constants shared by the Scipion layer of the plugin (the core never imports this)."""

#: key of the DeepAlign citation in :mod:`scipion_deepalign.bibtex`
CITE_DEEPALIGN = "JimenezMoreno2021"

#: short name of the plugin: the prefix of protocol labels ("deepalign - train") in the GUI
PLUGIN_NAME = "deepalign"

#: environment variable naming the Python interpreter that runs ``deepalign`` commands
DEEPALIGN_PYTHON = "DEEPALIGN_PYTHON"

#: network kinds offered by the training form, in the order of the form's choices
NETWORK_KINDS = ("regional", "shared")
#: training losses offered by the form, in the order of the form's choices
LOSSES = ("bce", "mae")

#: names of the per-particle attributes written on output items
REGION_ATTR = "_deepalign_region%d"
REGION_PROB_ATTR = "_deepalign_regionProb%d"
SCORE_ATTR = "_deepalign_score"
