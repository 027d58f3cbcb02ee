"""Named training configurations, one per lesson: ``get(name, smoke=False, **overrides)``."""

from seglab.recipes.catalogue import (
    BASNET_DUTS,
    DEEPLABV3PLUS_CIHP,
    PETS_CLASS_WEIGHTS,
    U2NET_SLUDGE,
    U2NETP_SLUDGE,
    UNET_PETS,
    get,
    names,
)
from seglab.recipes.recipe import Recipe, Reference, UnknownRecipeError

__all__ = [
    "BASNET_DUTS",
    "DEEPLABV3PLUS_CIHP",
    "PETS_CLASS_WEIGHTS",
    "U2NETP_SLUDGE",
    "U2NET_SLUDGE",
    "UNET_PETS",
    "Recipe",
    "Reference",
    "UnknownRecipeError",
    "get",
    "names",
]
