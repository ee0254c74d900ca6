"""Search: evolve what scores networks, or evolve networks with a score.

Two searches live here. ``evolve`` (DEAP genetic programming) evolves *programs*: in come
statistics stores or proxy tables with accuracy labels, out goes the best program by
rank correlation over tasks (checkpointed generations, hall of fame, results JSON).
``aging*`` (regularised evolution, Real et al. 2019) evolves *cells* of a search space
from :func:`eznas_store.sources.spaces.get_space`: in come a proxy or program, a dataset
batch and a benchmark table; out goes the best-scored cell, judged by its true accuracy
and rank in the table (``search.json`` + ``history.csv``).
"""
