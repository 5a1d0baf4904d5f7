"""Creative selection: (search phrase, creative) relevance by LXMERT, CLIP, early fusion and ION scorers.

Entry points: :func:`core.matching.service.train_matcher`, :func:`~core.matching.service.match`,
:func:`~core.matching.service.evaluate_matching`; triples in :mod:`core.matching.triples`; which variant runs
and why in :mod:`core.matching.registry`; metrics in :mod:`core.matching.evaluate`.
"""
