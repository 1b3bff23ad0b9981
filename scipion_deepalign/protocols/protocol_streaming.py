"""Open input sets (Scipion streaming): particles are processed in batches as they arrive,
the output set grows after every batch and stays open until the input closes (mixin of the
predict and align protocols).

One step (:meth:`StreamSteps.streamStep`) watches the input: it re-reads the input sqlite
(only this step reads sets, so no two threads share a cursor), cuts the new particles into
batches of ``streamBatchSize`` (a last, smaller batch once the input is closed), records each
batch's item ids in ``extra/stream/batch_NNNN/ids.json`` before processing it, runs the
protocol's ``deepalign`` command(s) on it and appends its particles to the output. Continuing
a run reprocesses no finished batch: a batch whose result STAR exists is only appended, and
items already in the output are never appended twice.

Why this mixin rather than pyworkflow's ``ProtStreamingBase`` (present since 3.11): that base
makes a protocol a step generator (``stepsGeneratorStep``) that needs at least 3 threads in
parallel mode and inserts steps while it runs; the predict and align protocols here also run
closed sets as ordinary parts (:mod:`.protocol_parts`) on 1 thread per GPU, and a batch is one
``deepalign`` command anyway. One watching step keeps both modes on the same steps, files and
resume rules, with the threads the form asks for.
"""
import json
import os
import time

import pyworkflow.protocol.params as params
from pwem.objects import SetOfParticles
from pyworkflow.object import Set, String

__all__ = ["StreamSteps", "DEFAULT_STREAM_BATCH"]

#: particles per batch of an open input set, unless the form says otherwise
DEFAULT_STREAM_BATCH = 1000
_BATCH_DIR = "batch_%04d"
_IDS, _INPUT_SQLITE, _RESULT = "ids.json", "input.sqlite", "result.star"


class StreamSteps:
    """Streaming form parameters, step and output updates (mixin).

    The protocol provides ``inputParticles``, ``outputs.outputParticles`` and the hooks
    ``_streamProcess(star, result_star, folder)`` (run the commands of one batch),
    ``_streamResultOptions()`` (keywords of :meth:`_resultUpdater`), ``_streamConvertAttributes()``
    (item attributes to convert) and ``_streamFinish(out)`` (reports and relations).
    """

    def _defineStreamParams(self, form):
        form.addParam("streamBatchSize", params.IntParam, default=DEFAULT_STREAM_BATCH,
                      expertLevel=params.LEVEL_ADVANCED, label="Streaming batch (particles)",
                      help="When the input set is still open (streaming), its particles are "
                           "processed in batches of this many as they arrive; the output "
                           "stays open until the input closes.")
        form.addParam("streamingSleepOnWait", params.IntParam, default=10,
                      expertLevel=params.LEVEL_ADVANCED, label="Streaming: check every (s)",
                      help="Seconds between two looks at an open input set.")

    def _streamErrors(self):
        size = self.getAttributeValue("streamBatchSize", None)
        if size is not None and size < 1:
            return [f"Streaming batch must be at least 1 particle, got {size}."]
        return []

    # ------------------------------------------------------------- input
    def _freshInput(self):
        """The input set read again from its sqlite (its current items and stream state)."""
        fresh = SetOfParticles(filename=self.inputParticles.get().getFileName())
        fresh.loadAllProperties()
        return fresh

    def _isInputStreaming(self):
        """An open input, or a run that started streaming (continued after the input closed:
        its recorded batches are kept, not redone by the closed-set steps)."""
        if self.inputParticles.get() is None:
            return False
        if os.path.isdir(self._getExtraPath("stream")):
            return True
        fresh = self._freshInput()
        try:
            return fresh.isStreamOpen()
        finally:
            fresh.close()

    def _insertStreamStep(self, prerequisites):
        return self._insertFunctionStep(self.streamStep, prerequisites=prerequisites,
                                        needsGPU=self._needsGpu())

    # ------------------------------------------------------------- step
    def streamStep(self):
        batches = self._recordedBatches()
        for index, ids in enumerate(batches, 1):  # continue: finish what was started
            self._runBatch(index, ids)
        while True:
            source = self._freshInput()
            closed = source.isStreamClosed()  # read first: then every item is there
            seen = {i for ids in batches for i in ids}
            new = [int(p.getObjId()) for p in source.iterItems() if p.getObjId() not in seen]
            source.close()
            size = max(1, self.getAttributeValue("streamBatchSize", DEFAULT_STREAM_BATCH))
            while new and (len(new) >= size or closed):
                batch, new = new[:size], new[size:]
                batches.append(batch)
                self._recordBatch(len(batches), batch)
                self._runBatch(len(batches), batch)
            if closed:
                break
            time.sleep(max(1, self.getAttributeValue("streamingSleepOnWait", 10)))
        self._closeStreamOutput()

    def _batchFile(self, index, name):
        return self._getExtraPath("stream", _BATCH_DIR % index, name)

    def _recordedBatches(self):
        batches, index = [], 1
        while os.path.exists(self._batchFile(index, _IDS)):
            with open(self._batchFile(index, _IDS)) as fh:
                batches.append(json.load(fh))
            index += 1
        return batches

    def _streamResultStars(self):
        """The result STAR of every recorded batch, in batch order."""
        return [self._batchFile(i, _RESULT) for i in range(1, len(self._recordedBatches()) + 1)]

    def _recordBatch(self, index, ids):
        path = self._batchFile(index, _IDS)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as fh:
            json.dump(ids, fh)
        os.replace(path + ".tmp", path)

    def _runBatch(self, index, ids):
        """Process batch ``index`` (unless its result exists) and append it to the output."""
        from ..convert import set_to_core

        folder = os.path.dirname(self._batchFile(index, _IDS))
        result = self._batchFile(index, _RESULT)
        subset = self._batchSet(ids, self._batchFile(index, _INPUT_SQLITE))
        if not os.path.exists(result):
            set_to_core(subset, folder, extra_attributes=self._streamConvertAttributes())
            self._streamProcess(os.path.join(folder, "particles.star"), result, folder)
        n = self._appendResults(subset, result)
        subset.close()
        self.info(f"streaming batch {index}: {len(ids)} particles, {n} added to the output")

    def _batchSet(self, ids, sqlite_path):
        """The input items ``ids`` as a set of their own (written once, then reused)."""
        if os.path.exists(sqlite_path):
            subset = SetOfParticles(filename=sqlite_path)
            subset.loadAllProperties()
            return subset
        wanted = set(ids)
        source = self._freshInput()
        subset = SetOfParticles(filename=sqlite_path + ".tmp")
        subset.copyInfo(source)
        for item in source.iterItems():
            if item.getObjId() in wanted:
                subset.append(item.clone())
        subset.write()
        source.close()
        subset.close()
        os.replace(sqlite_path + ".tmp", sqlite_path)
        return self._batchSet(ids, sqlite_path)

    # ------------------------------------------------------------- output
    def _streamOutput(self, subset):
        """The open output set, created from the first batch's set information."""
        name = self.outputs.outputParticles.name
        out = getattr(self, name, None)
        if out is not None:
            out.enableAppend()
            return out
        options = self._streamResultOptions()
        out = self._createSetOfParticles()
        out.copyInfo(subset)
        if options.get("poses"):
            out.setAlignmentProj()
        model_dir = self._streamModelDir()
        if model_dir:
            from .protocol_base import MODEL_DIR_ATTR

            setattr(out, MODEL_DIR_ATTR, String(os.path.abspath(model_dir)))
        return out

    def _streamModelDir(self):
        return None

    def _appendResults(self, subset, result_star):
        """Append the items of ``subset`` with results, skipping ids already output."""
        out = self._streamOutput(subset)
        present = {int(p.getObjId()) for p in out.iterItems()} if out.getSize() else set()
        update = self._resultUpdater(subset, result_star, **self._streamResultOptions())
        added = 0
        for item in subset.iterItems():
            if int(item.getObjId()) in present:
                continue
            item = item.clone()
            update(item)
            if getattr(item, "_appendItem", True):
                out.append(item)
                added += 1
        self._updateOutputSet(self.outputs.outputParticles.name, out, state=Set.STREAM_OPEN)
        return added

    def _closeStreamOutput(self):
        name = self.outputs.outputParticles.name
        out = getattr(self, name, None)
        if out is None:
            return
        out.enableAppend()
        self._updateOutputSet(name, out, state=Set.STREAM_CLOSED)
        self._streamFinish(getattr(self, name))

    def _streamSummary(self):
        n = len(self._recordedBatches())
        return [f"Streaming input: {n} batch{'es' if n != 1 else ''} processed."] if n else []
