"""Sources: everything read from outside the package, before anything is computed.

In: published files -- benchmark accuracy tables (CSV), dataset images (CIFAR/ImageNet16
pickles, image folders, embedded digits), NAS-Bench-Suite-Zero proxy tables -- and the
search spaces' own definitions. Out: immutable tables, normalised image batches, and per
space a :class:`~eznas_store.sources.spaces.base.SearchSpace` (parse, build, block layout,
enumeration, mutation) that every later stage uses instead of knowing a space itself.
"""
