"""Stage ``ingest``: collect the networks of a search space into a store, shard by shard, resumably.

In: an ``IngestConfig`` (dataset, benchmark table or space, network selection, batch,
seeds, shard ``i/n``). Out: a filled store (``store`` stage) and an ``IngestReport``.
The driver plans the job (``plan``: networks, accuracies, data batch → ``StorePlan``),
computes the layout from the search space and creates or joins the store (``layout``),
then collects each network (``networks``: statistics and proxies, as numpy rows) and
writes whole chunks, flags last; chunks already complete are skipped, so a killed job
resumes. Modules: ``config``, ``plan``, ``layout``, ``networks``, ``driver``.
"""
