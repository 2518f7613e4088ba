"""The one init-recipe registry shared by every lab (fine-tuning, rich/lazy).

``RECIPES.table()`` lists each recipe with its help line and declared parameters (name=default), so a
panel can list them; ``RECIPES.get(name)`` is the recipe's ``param.Parameterized`` class.
"""

from __future__ import annotations

from ..registry import Registry

RECIPES = Registry("init recipe", hint="List them with workbench.init.RECIPES.table().")

_COMMON = ("name", "include", "exclude", "embeddings", "seed")


def register(name: str, help: str = ""):
    """Decorator: register an :class:`~workbench.init.base.InitRecipe` subclass under ``name``."""

    def add(cls):
        from .base import InitRecipe

        if not (isinstance(cls, type) and issubclass(cls, InitRecipe)):
            raise TypeError(f"init recipe {name!r} must be an InitRecipe subclass, got {cls!r}.")
        cls.recipe_name = name
        own = {k: v.default for k, v in cls.param.objects("existing").items() if k not in _COMMON}
        RECIPES.register(name, cls, help=help, params=", ".join(f"{k}={v!r}" for k, v in own.items()),
                         needs_data=bool(cls.needs_data))
        return cls

    return add
