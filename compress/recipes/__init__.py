"""Family recipes for `compress run`, looked up by the registered model's family.

:func:`recipe_for` maps a model name to its family (``models.registry``) and the family to a
:class:`~compress.recipes.base.Recipe`; an unknown family is a :class:`CompressError` naming
the families that have one. :func:`register_recipe` adds a family (a user's model).
"""

from __future__ import annotations

from collections.abc import Callable

from compress.errors import CompressError
from compress.recipes.base import Recipe

_FACTORIES: dict[str, Callable[[], Recipe]] = {}


def register_recipe(family: str, factory: Callable[[], Recipe]) -> None:
    """Make `family` known to ``compress run`` (`factory` builds its recipe)."""
    if family in _FACTORIES:
        raise CompressError(f"a recipe for family {family!r} is already registered")
    _FACTORIES[family] = factory


def _builtin() -> None:
    if "lhq-svc" not in _FACTORIES:
        from compress.recipes.lhq_svc import LHQSVCRecipe

        _FACTORIES["lhq-svc"] = LHQSVCRecipe
    if "separation" not in _FACTORIES:
        from compress.recipes.separation import SeparationRecipe

        _FACTORIES["separation"] = SeparationRecipe
    if "sts" not in _FACTORIES:
        from compress.recipes.sts import StsRecipe

        _FACTORIES["sts"] = StsRecipe


def families() -> list[str]:
    """Families that have a recipe."""
    _builtin()
    return sorted(_FACTORIES)


def family_of(model_name: str) -> str:
    from models import registry
    from models.errors import ModelsError

    try:
        return registry.get(model_name).family
    except ModelsError as exc:
        raise CompressError(f"model {model_name!r} is not registered; known: "
                            f"{', '.join(registry.names())}") from exc


def recipe_for(model_name: str) -> Recipe:
    """The recipe of `model_name`'s family (CompressError when it has none)."""
    _builtin()
    fam = family_of(model_name)
    if fam not in _FACTORIES:
        raise CompressError(
            f"compress run has no recipe for family {fam!r} (model {model_name!r}); "
            f"families with a recipe: {', '.join(sorted(_FACTORIES))}"
        )
    return _FACTORIES[fam]()
