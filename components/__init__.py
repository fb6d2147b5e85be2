"""Pulumi ComponentResources: the only code that creates cloud resources.

``config.py`` is the one place that reads ``pulumi.Config``; every component takes a
frozen ``<Type>Args`` dataclass built from the validated settings, so tests build Args
directly. Node files and user-data come from ``cloud_init`` (pure functions).
"""
