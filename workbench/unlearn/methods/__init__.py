"""Unlearning methods, one file each, registered in :data:`METHODS` by importing this package.

>>> from workbench.unlearn.methods import METHODS
>>> sorted(METHODS.names())
['flat', 'ga', 'graddiff', 'npo', 'rmu', 'simnpo']
"""

from . import flat, grad_ascent, graddiff, npo, rmu, simnpo  # noqa: F401  (registration)
from .base import METHODS, Method, Terms

__all__ = ["METHODS", "Method", "Terms"]
