"""Former home of the recipes, kept for imports written before the split: the ``Recipe`` type
is in ``seglab.recipes.recipe``, the lessons' recipes in ``seglab.recipes.catalogue``."""

from seglab.recipes.catalogue import *  # noqa: F403
from seglab.recipes.catalogue import RECIPES, get, names  # noqa: F401
from seglab.recipes.recipe import *  # noqa: F403
from seglab.recipes.recipe import DEFAULT, Recipe, Reference, UnknownRecipeError  # noqa: F401

# The catalogue's dict under its former name: code written before adds recipes to it.
_RECIPES = RECIPES
