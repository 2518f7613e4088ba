"""Fine-tuning methods, one file each, registered in :data:`METHODS` by importing this package.

Every module of this package is imported here, so adding a method is adding one file.

>>> from workbench.finetune.methods import METHODS
>>> sorted(METHODS.names())
['adalora', 'fourierft', 'full', 'lora', 'lora_sb', 'miss', 'vera']
"""

import importlib
import pkgutil

from .base import METHODS, Method

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")  # registration happens at import

__all__ = ["METHODS", "Method"]
