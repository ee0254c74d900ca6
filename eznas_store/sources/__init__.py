"""Sources: everything read from outside the package, before anything is computed.

In: published files -- benchmark accuracy tables (CSV), dataset images (CIFAR/ImageNet16
pickles, image folders, embedded digits), NAS-Bench-Suite-Zero proxy tables -- and the
search spaces' own definitions. Out: immutable tables, normalised image batches, and per
space a :class:`~eznas_store.sources.spaces.base.SearchSpace` (parse, build, block layout,
enumeration, mutation) that every later stage uses instead of knowing a space itself.

Every input is bounded and checked here, at the edge (:mod:`eznas_store.sources.limits`:
decompressed bytes, pickle contents, image sizes), and a table's rows against a space
(:mod:`eznas_store.sources.table_cells`), so a hostile or careless file ends in one error
line naming it.
"""
