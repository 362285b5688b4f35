"""Prefect flows and the ``partsynth`` command line: thin wrappers over :mod:`pipeline`,
:mod:`refine_net` and :mod:`parser_net`."""
