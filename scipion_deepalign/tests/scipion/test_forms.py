"""The protocol forms as users see them: help everywhere, conditions that match the network
choice, and the same defaults as the ``deepalign`` command line (one default per fact)."""
import argparse
import importlib

import pytest

pytest.importorskip("pwem")

import pyworkflow.protocol.params as params  # noqa: E402

from scipion_deepalign import constants as cts  # noqa: E402
from scipion_deepalign import protocols  # noqa: E402
from scipion_deepalign.core import defaults  # noqa: E402
from scipion_deepalign.protocols.protocol_align import CTF_HANDLING  # noqa: E402

#: parameters pyworkflow adds to every form (their help is pyworkflow's)
PYWORKFLOW_PARAMS = {"runName", "runMode", "hostName", "numberOfThreads", "numberOfMpi"}
#: parameters that only mean something for the regional network
REGIONAL_ONLY = ("minParticlesPerRegion", "regionsPerStep", "positivesPerRegion")


def _form_params(protocol_class):
    """``{name: Param}`` of the protocol's own parameters (no groups, no sections)."""
    definition = protocol_class()._definition
    return {name: p for name, p in definition.iterAllParams()
            if not isinstance(p, (params.Group, params.Line, params.Section))
            and name not in PYWORKFLOW_PARAMS}


@pytest.mark.parametrize("name", protocols.__all__)
def test_every_parameter_has_help(name):
    missing = [p for p, param in _form_params(getattr(protocols, name)).items()
               if len((param.help.get() or "").strip()) < 20]
    assert not missing, f"{name}: no (or a one-word) help for {missing}"


@pytest.mark.parametrize("name", protocols.__all__)
def test_labels_write_angstrom_as_scipion_does(name):
    labels = [param.label.get() for param in _form_params(getattr(protocols, name)).values()]
    assert not [label for label in labels if "(A)" in label], labels


@pytest.mark.parametrize("name", ["DeepAlignProtTrain", "DeepAlignProtRefine"])
def test_regional_parameters_are_shown_only_for_the_regional_network(name):
    prot = getattr(protocols, name)()
    for param in REGIONAL_ONLY:
        assert f"networkKind == {cts.REGIONAL}" in prot.getParam(param).condition.get()
        prot.networkKind.set(cts.NETWORK_KINDS.index("regional"))
        assert prot.evalParamCondition(param)
        prot.networkKind.set(cts.NETWORK_KINDS.index("shared"))
        assert not prot.evalParamCondition(param)


def test_texts_of_shared_network_parameters_hold_for_both_networks():
    prot = protocols.DeepAlignProtTrain()
    for param in ("regionSpacingDeg", "positivesPerRegion", "numberOfEpochs"):
        assert "its own classifier" not in prot.getParam(param).help.get()
    assert "shared network" in prot.getParam("regionSpacingDeg").help.get()


def test_align_asks_for_k_only_when_it_predicts():
    prot = protocols.DeepAlignProtAlign()
    assert not prot.evalParamCondition("topK")
    assert prot.getParam("globalSearch").expertLevel.get() == params.LEVEL_ADVANCED


def test_loss_choices_are_words_and_the_command_gets_the_core_name_of_each(tmp_path):
    prot = protocols.DeepAlignProtTrain()
    choices = prot.getParam("lossFunction").choices
    assert choices == ["binary cross-entropy", "mean absolute error (Xmipp)"]
    prot._getExtraPath = lambda *names: str(tmp_path.joinpath(*names))
    prot._createFilenameTemplates()
    prot._trainingStar = lambda: "particles.star"  # no input set in a bare form
    commands = []
    prot._runDeepAlign = lambda command, args: commands.append(args)
    for index, words in enumerate(choices):
        prot.lossFunction.set(index)
        prot.trainRegionsStep([])
        loss = commands[-1][commands[-1].index("--loss") + 1]
        assert loss in defaults.LOSSES and cts.LOSS_LABELS[loss] == words


def test_main_inputs_are_important():
    assert protocols.DeepAlignProtRefine().getParam("inputTrainingParticles").isImportant()
    assert protocols.DeepAlignProtConsensus().getParam("inputSets").isImportant()


# ------------------------------------------------------------------ one default per fact
def _cli_defaults(command):
    parser = argparse.ArgumentParser()
    importlib.import_module(f"scipion_deepalign.cli.{command}").add_args(parser)
    return {action.dest: action.default for action in parser._actions}


def _form_value(protocol, name):
    return getattr(getattr(protocols, protocol)(), name).get()


def _network(index):
    return cts.NETWORK_KINDS[index]


def _loss(index):
    return defaults.LOSSES[index]


def _ctf(index):
    return list(CTF_HANDLING.values())[index]


def _source(index):
    return defaults.TRAINING_SOURCES[index]


def _head(index):
    return defaults.HEADS[index]


def _trunk(index):
    return defaults.TRUNKS[index]


def _class_output(index):
    return defaults.CLASS_OUTPUTS[index]


def _class_prior(index):
    return defaults.CLASS_PRIORS[index]


def _class_search(index):
    return defaults.CLASS_SEARCHES[index]


#: (protocol, parameter, how the form value reads for the core, [(command, option dest)],
#: the core's value when an option's default is None meaning "the core's")
SHARED_OPTIONS = [
    ("DeepAlignProtTrain", "regionSpacingDeg", None, [("train", "spacing"), ("run", "spacing")],
     None),
    ("DeepAlignProtTrain", "numberOfEpochs", None, [("train", "epochs"), ("run", "epochs")],
     None),
    ("DeepAlignProtTrain", "batchSize", None, [("train", "batch_size")], None),
    ("DeepAlignProtTrain", "positivesPerRegion", None,
     [("train", "positives"), ("run", "positives")], None),
    ("DeepAlignProtTrain", "networkKind", _network, [("train", "network"), ("run", "network")],
     None),
    ("DeepAlignProtTrain", "lossFunction", _loss, [("train", "loss")],
     defaults.train_default("loss")),
    ("DeepAlignProtTrain", "learningRate", None, [("train", "learning_rate")],
     defaults.train_default("learning_rate")),
    ("DeepAlignProtTrain", "minParticlesPerRegion", None, [("train", "min_particles")], None),
    ("DeepAlignProtTrain", "symmetryGroup", None,
     [(c, "symmetry") for c in ("train", "run", "align", "reconstruct", "consensus")], None),
    ("DeepAlignProtPredict", "topK", None, [("predict", "top_k"), ("run", "top_k")], None),
    ("DeepAlignProtAlign", "angularStepDeg", None, [("align", "step"), ("run", "step")], None),
    ("DeepAlignProtAlign", "maxShiftPx", None, [("align", "max_shift"), ("run", "max_shift")],
     None),
    ("DeepAlignProtAlign", "alignResolutionA", None,
     [("align", "target_resolution"), ("run", "target_resolution")], None),
    ("DeepAlignProtTrain", "targetResolutionA", None,
     [("train", "target_resolution"), ("run", "target_resolution")], None),
    ("DeepAlignProtRefine", "targetResolutionA", None, [("train", "target_resolution")], None),
    ("DeepAlignProtRefine", "alignResolutionA", None, [("align", "target_resolution")], None),
    ("DeepAlignProtAlign", "localRefinement", None, [("align", "refine"), ("run", "refine")],
     None),
    ("DeepAlignProtAlign", "ctfHandling", _ctf, [("align", "ctf_mode")], None),
    ("DeepAlignProtTrain", "trainingSource", _source,
     [("train", "training_source"), ("run", "training_source")], None),
    ("DeepAlignProtTrain", "imagesPerEpoch", None,
     [("train", "images_per_epoch"), ("run", "images_per_epoch")], None),
    ("DeepAlignProtTrain", "networkHead", _head, [("train", "head")], None),
    ("DeepAlignProtTrain", "networkTrunk", _trunk, [("train", "trunk"), ("run", "trunk")],
     None),
    ("DeepAlignProtTrain", "labelSoftness", None, [("train", "label_softness")], None),
    ("DeepAlignProtTrain", "noiseRampEpochs", None,
     [("train", "noise_ramp_epochs"), ("run", "noise_ramp_epochs")], None),
    ("DeepAlignProtAlign", "windowOverlapDeg", None, [("align", "overlap"), ("run", "overlap")],
     None),
    ("DeepAlignProtAlign", "followDeg", None, [("align", "follow"), ("run", "follow")], None),
    ("DeepAlignProtAlign", "probabilityMass", None,
     [("align", "probability_mass"), ("run", "probability_mass")], None),
    ("DeepAlignProtAlign", "maxRegions", None,
     [("align", "max_regions"), ("run", "max_regions")], None),
    ("DeepAlignProtAlign", "fallbackProbability", None,
     [("align", "fallback_probability"), ("run", "fallback_probability")], None),
    ("DeepAlignProtAlign", "fallbackSignificance", None,
     [("align", "fallback_significance"), ("run", "fallback_significance")], None),
    ("DeepAlignProtClasses3D", "classOutput", _class_output,
     [("train", "class_output"), ("run", "class_output")], None),
    ("DeepAlignProtClasses3D", "classPrior", _class_prior, [("run", "class_prior")], None),
    ("DeepAlignProtClasses3D", "classSearch", _class_search,
     [("run", "class_search"), ("align", "class_search"), ("classify", "class_search")], None),
    ("DeepAlignProtConsensus", "maxAngleDeg", None, [("consensus", "max_angle")], None),
    ("DeepAlignProtConsensus", "maxInplaneDeg", None, [("consensus", "max_inplane")], None),
    ("DeepAlignProtConsensus", "maxShiftPx", None, [("consensus", "max_shift")], None),
    ("DeepAlignProtConsensus", "minAgree", None, [("consensus", "min_agree")], None),
    ("DeepAlignProtReconstruct", "splitSeed", None, [("reconstruct", "seed")], None),
    ("DeepAlignProtReconstruct", "maskRadiusA", None, [("reconstruct", "mask_radius")], None),
    ("DeepAlignProtReconstruct", "correctCtf", None, [("reconstruct", "ctf")], None),
]
#: deliberate differences, with the reason (a new one must be argued here)
#: (protocol, parameter) -> (command, option dest, reason)
KNOWN_DIFFERENCES = {
    ("DeepAlignProtConsensus", "keepPosesFrom"): (
        "consensus", "keep_from",
        "the CLI lets each particle's agreeing group choose; a Scipion output keeps one set"),
}


@pytest.mark.parametrize("protocol, param, to_core, options, core_value", SHARED_OPTIONS,
                         ids=[f"{p}.{n}" for p, n, *_ in SHARED_OPTIONS])
def test_cli_and_form_share_the_default(protocol, param, to_core, options, core_value):
    value = _form_value(protocol, param)
    value = to_core(value) if to_core is not None else value
    for command, dest in options:
        cli = _cli_defaults(command)[dest]
        cli = core_value if cli is None and core_value is not None else cli
        assert cli == value, f"{protocol}.{param} = {value!r} but deepalign {command} " \
                             f"--{dest.replace('_', '-')} = {cli!r}"


@pytest.mark.parametrize("protocol, param", list(KNOWN_DIFFERENCES),
                         ids=[f"{p}.{n}" for p, n in KNOWN_DIFFERENCES])
def test_known_differences_are_still_different(protocol, param):
    command, dest, _ = KNOWN_DIFFERENCES[protocol, param]
    assert _form_value(protocol, param) != _cli_defaults(command)[dest]
    assert (protocol, param) not in {(p, n) for p, n, *_ in SHARED_OPTIONS}


def test_cli_choices_are_the_cores():
    train = argparse.ArgumentParser()
    importlib.import_module("scipion_deepalign.cli.train").add_args(train)
    run = argparse.ArgumentParser()
    importlib.import_module("scipion_deepalign.cli.run").add_args(run)
    for parser in (train, run):
        network = next(a for a in parser._actions if a.dest in ("network",))
        assert tuple(network.choices) == defaults.NETWORKS
    for dest, choices, param in (("class_output", defaults.CLASS_OUTPUTS, "classOutput"),
                                 ("class_prior", defaults.CLASS_PRIORS, "classPrior"),
                                 ("class_search", defaults.CLASS_SEARCHES, "classSearch")):
        option = next(a for a in run._actions if a.dest == dest)
        assert tuple(option.choices) == choices
        # the form offers the same words, in the same order (it stores the index)
        assert protocols.DeepAlignProtClasses3D().getParam(param).choices == list(choices)
    with pytest.raises(SystemExit):
        run.parse_args(["--train", "a", "--particles", "b", "--volume", "c", "--out", "d",
                        "--network", "shraed"])
