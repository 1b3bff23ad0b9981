"""What the 3D classes protocol tells about its result: the summary (classes, their
resolution, one line per iteration of ``deepalign classify``) and the methods text, read from
the outputs and the command's report (:class:`ClassesInfo`, a mixin of
:class:`.protocol_classes.DeepAlignProtClasses3D`)."""
import os

from ..core import defaults

__all__ = ["ClassesInfo"]


class ClassesInfo:
    """The summary and methods of the 3D classes protocol (needs its ``_path``,
    ``_numberOfClasses``, ``_fromOneMap``, ``classifyReport`` and file names)."""

    def _summary(self):
        report = self._classReport()
        if report is None:
            return ["Classification not finished yet."]
        sizes, n = report
        how = {"run": "network of the classes",
               "cnn": "deepalign classify --cnn, network of the classes fine-tuned by "
                      "iterations",
               "global": "deepalign classify, iterated global search"}[self._path()]
        lines = [f"{n} particles in {len(sizes)} classes ({how} {self._mapsWords()}):"]
        for k, size in sizes.items():
            resolution = self._classResolution(k)
            lines.append(f"class {k}: {size} particles ({100 * size / max(n, 1):.1f} %)"
                         + (f", FSC 0.143 of its half maps {resolution:.1f} A"
                            if resolution else ""))
        return lines + self._iterationLines()

    def _iterationLines(self):
        """One summary line per iteration of ``deepalign classify`` (none with the network
        in one pass); with ``--cnn`` each says how its network was trained."""
        report = self.classifyReport()
        if report is None:
            return []
        lines = [f"deepalign classify: {len(report['iterations'])} iterations (stopped: "
                 + {"converged": "fewer than "
                                 f"{100 * defaults.CLASSIFY_STOP_FRACTION:g} % changed class",
                    "iterations": "the iterations given ran"}.get(report.get("stopped"),
                                                                   str(report.get("stopped")))
                 + ")"]
        from ..core.classes.class_maps import focus_words
        from ..core.classes.split import split_words

        for it in report["iterations"]:
            changed = it["changed_fraction"]
            lines.append(
                f"iteration {it['iteration']}: class sizes "
                f"{', '.join(map(str, it['class_sizes']))}; changed class "
                + ("-" if changed is None else f"{100 * changed:.1f} %") + "; FSC 0.143 "
                + ", ".join("-" if r is None else f"{r:.1f} A"
                            for r in it["resolution_0143_a"])
                + _network_words(it.get("network")) + split_words(it.get("first_split"))
                + focus_words(it.get("focus_fraction")))
        return lines

    def _methods(self):
        report = self._classReport()
        if report is None:
            return []
        sizes, n = report
        report = self.classifyReport()
        iterations = f" ({len(report['iterations'])} iterations)" if report else ""
        rebuilt = ("the class maps were reconstructed from their particles and low-passed at "
                   f"their FSC {defaults.CLASSIFY_FILTER_FSC}")
        how = {"run": "one network trained on projections of every map predicted each "
                      "particle's class and regions, searched by correlation",
               "cnn": "one network trained on projections of every map predicted each "
                      "particle's class and regions, searched by correlation; "
                      f"{rebuilt}, and the network was fine-tuned on their projections, for "
                      f"the next iteration{iterations}",
               "global": "each particle was aligned globally against every class map by "
                         f"correlation, and {rebuilt} for the next iteration"
                         f"{iterations}"}[self._path()]
        start = ""
        if self._fromOneMap():
            start = (" Every class started from the one reference map; the first classes were "
                     "drawn by how the particles' differences from it vary (the leading "
                     "directions of their 3D covariance), and later iterations compared the "
                     "particles with the class maps only where these differ most.")
        return [f"{n} particles were classified into {self._numberOfClasses()} classes "
                f"{self._mapsWords()} with DeepAlign: {how}, and each particle took the class "
                f"of its best score.{start} Class sizes: "
                f"{', '.join(str(s) for s in sizes.values())}."]

    def _mapsWords(self):
        """``"against K maps"`` or ``"from one map"``, for the summary and the methods."""
        if self._fromOneMap():
            return "from one map"
        return f"against {self._numberOfClasses()} maps"

    def _classReport(self):
        """``({class id: size}, n)`` of the output classes (None before the output)."""
        classes = getattr(self, self.outputs.outputClasses.name, None)
        if classes is None:
            return None
        self._createFilenameTemplates()
        sizes = {cls.getObjId(): cls.getSize() for cls in classes.iterItems(orderBy="id")}
        return sizes, sum(sizes.values())

    def _classResolution(self, k):
        """FSC 0.143 resolution (A) of class ``k``'s half maps, None when unknown."""
        from ..core.io import read_json

        path = self._getFileName("class_fsc", k=k)
        return read_json(path).get("resolution_0143_a") if os.path.exists(path) else None


def _network_words(network):
    """``"; network ..."`` of an iteration of ``classify --cnn`` (its report's ``network``
    entry; empty for the global search)."""
    if not network:
        return ""
    epochs = f"{network['epochs']} epoch" + ("" if network["epochs"] == 1 else "s")
    how = ("reused" if network.get("reused") else
           f"fine-tuned {epochs}" if network.get("fine_tuned_from") else f"trained {epochs}")
    return (f"; network {how} ({network['train_seconds']:.0f} s), "
            f"{network['pairs_per_particle']:.2f} (class, region) pairs per particle")
