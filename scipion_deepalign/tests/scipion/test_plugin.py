# ruff: noqa: E402  (pyworkflow is imported after the skip where it is absent)
"""pyworkflow discovers the plugin through its entry point and lists every protocol."""
import os

import pytest

pytest.importorskip("pyworkflow", reason="the Scipion tests need pyworkflow")

EXPECTED = ["DeepAlignProtTrain", "DeepAlignProtPredict", "DeepAlignProtAlign",
            "DeepAlignProtRefine", "DeepAlignProtReconstruct", "DeepAlignProtConsensus",
            "DeepAlignProtClasses3D"]


@pytest.fixture(scope="module")
def domain():
    from pyworkflow.plugin import Domain

    return Domain


def test_entry_point_names_the_package():
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="pyworkflow.plugin")}
    # pyworkflow imports the entry point NAME as the package
    assert names.get("scipion_deepalign") == "scipion_deepalign"


def test_domain_finds_plugin(domain):
    plugins = domain.getPlugins()
    assert "scipion_deepalign" in plugins
    plugin = domain.getPlugin("scipion_deepalign").Plugin
    from scipion_deepalign.plugin import Plugin

    assert plugin is Plugin


@pytest.mark.parametrize("name", EXPECTED)
def test_domain_lists_protocol(domain, name):
    protocols = domain.getProtocols()
    assert name in protocols, f"{name} not discovered"
    cls = protocols[name]
    assert cls.__module__.startswith("scipion_deepalign.protocols")
    assert cls._label  # a protocol with _label None is treated as a base class


def test_base_class_is_not_listed(domain):
    assert "DeepAlignProtBase" not in domain.getProtocols()


def test_model_object_is_discovered(domain):
    assert "DeepAlignModel" in domain.getObjects()


def test_protocols_conf_lists_every_protocol():
    from pathlib import Path

    import scipion_deepalign

    conf = (Path(scipion_deepalign.__file__).parent / "protocols.conf").read_text()
    for name in EXPECTED:
        assert f'"{name}"' in conf


def test_citation_is_parsed(domain):
    from scipion_deepalign.constants import CITE_DEEPALIGN

    bib = domain.getPlugin("scipion_deepalign")._bibtex
    assert bib[CITE_DEEPALIGN]["doi"].endswith("10.1016/j.jsb.2021.107712")
    assert "2021" == bib[CITE_DEEPALIGN]["year"]


def test_plugin_runs_commands_with_its_python(monkeypatch):
    import sys

    from scipion_deepalign.plugin import Plugin

    monkeypatch.delenv("DEEPALIGN_PYTHON", raising=False)
    Plugin._defineVariables()
    assert Plugin.getPython() == sys.executable
    assert Plugin.getCommandArgs("train", ["--epochs", 2]) == \
        "-m scipion_deepalign.cli train --epochs 2"
    env = Plugin.getEnviron(gpu_ids=[1, 3], threads=2)
    assert env.getPrepend() == ""  # what pyworkflow.utils.process.runJob calls
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3" and env["OMP_NUM_THREADS"] == "2"
    assert Plugin.getEnviron(gpu_ids=[])["CUDA_VISIBLE_DEVICES"] == "-1"


def test_core_imports_without_pyworkflow():
    import subprocess
    import sys

    code = ("import sys, scipion_deepalign.core.geometry, scipion_deepalign.core.particles; "
            "bad = [m for m in sys.modules if m.startswith(('pyworkflow', 'pwem'))]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_plugin_path_is_the_package_folder(domain):
    plugin = domain.getPluginModule("scipion_deepalign")._pluginInstance
    assert os.path.isfile(os.path.join(plugin.getPath(), "protocols.conf"))
    assert plugin.name == "scipion_deepalign"  # the package, from the entry point


def test_protocol_labels_carry_the_short_plugin_name(domain):
    protocols = domain.getProtocols()
    labels = {name: protocols[name].getClassLabel() for name in EXPECTED}
    assert labels["DeepAlignProtTrain"] == "deepalign - train"
    assert all(label.startswith("deepalign - ") for label in labels.values()), labels
    assert len(set(labels.values())) == len(labels)


def test_the_forms_name_the_plugin_by_its_short_name_but_the_package_stays_found(domain):
    protocols = domain.getProtocols()
    for name in EXPECTED:  # the "<name> compute" header of the threads row
        assert protocols[name].getClassPackageName() == "deepalign"
        assert protocols[name].getClassPackage().__name__ == "scipion_deepalign"


def _conf_entries():
    """``{protocol class name: tree text}`` of the DeepAlign group of protocols.conf."""
    import configparser
    import json
    from pathlib import Path

    import scipion_deepalign

    parser = configparser.ConfigParser()
    parser.optionxform = str
    parser.read(Path(scipion_deepalign.__file__).parent / "protocols.conf")
    tree = json.loads(parser["PROTOCOLS"]["Protocols SPA"])
    group = tree[0]["children"][0]
    assert group["text"] == "DeepAlign"
    return {entry["value"]: entry["text"] for entry in group["children"]}


def test_protocols_conf_texts_are_distinct_and_match_the_labels(domain):
    entries = _conf_entries()
    assert sorted(entries) == sorted(EXPECTED)
    assert len(set(entries.values())) == len(entries)
    protocols = domain.getProtocols()
    for name, text in entries.items():
        # the tree shows what the run list shows: one fact, the protocol's _label
        assert text == protocols[name].getClassLabel(), name
