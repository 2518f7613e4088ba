"""Two built-in, generated English-like text distributions: ``stories`` and ``recipes``.

Why generated: the workbench must run offline with no downloads and no licensing questions, yet
experiments such as "fine-tune on A, measure forgetting of B" need two text distributions that differ
clearly. Both corpora come from small probabilistic grammars (``random.Random(seed)``, so a seed gives
the same documents on every machine and Python version ≥ 3.2) and are fast: 2,000 documents take a few
tens of milliseconds.

``stories``
    Simple children's stories: a named hero (with a pronoun), a companion animal, a place, a lost or
    wanted object, a problem and its resolution. The hero's name, the animal and the object recur across
    the whole story, so a model has long-range structure to learn (predicting "Lily" at sentence 6 needs
    sentence 1). Past tense narrative with dialogue in quotes.
``recipes``
    Instructional text: a title, servings and times, an ingredient list with quantities and units, then
    numbered imperative steps that use the listed ingredients (again long-range: steps refer back to the
    list), temperatures and durations. Digits, units and imperative verbs make its vocabulary and syntax
    visibly different from ``stories``.

>>> docs = generate("stories", n_docs=3, seed=0)
>>> len(docs), docs == generate("stories", n_docs=3, seed=0)
(3, True)
"""

from __future__ import annotations

import random
from typing import Callable

from ..errors import ConfigError, unknown_name

# ---------------------------------------------------------------------------------------------- stories
_GIRLS = ("Lily", "Mia", "Sara", "Emma", "Lucy", "Anna", "Zoe", "Ella", "Ruby", "Nora", "Ivy", "Rosa",
          "Maya", "Kate", "Amy", "Julia", "Hana", "Leah")
_BOYS = ("Tom", "Ben", "Max", "Sam", "Leo", "Jack", "Finn", "Noah", "Timmy", "Oscar", "Omar", "Theo",
         "Hugo", "Eli", "Adam", "Ravi", "Kai", "Luke")
_ANIMALS = ("dog", "cat", "bunny", "bird", "duck", "frog", "fox", "bear", "mouse", "owl", "puppy", "kitten",
            "turtle", "squirrel", "pony", "lamb", "goat", "hen", "pig", "deer", "hedgehog", "butterfly")
_PLACES = (("the park", "green"), ("the forest", "dark"), ("the garden", "sunny"), ("the beach", "sandy"),
           ("the farm", "busy"), ("the hill", "windy"), ("the lake", "quiet"), ("the town", "busy"),
           ("the meadow", "wide"), ("the river", "cold"), ("the school", "big"), ("the market", "noisy"),
           ("the village", "small"), ("the woods", "deep"), ("the playground", "happy"), ("the zoo", "loud"))
_OBJECTS = ("ball", "kite", "hat", "book", "toy car", "red balloon", "blanket", "shell", "cookie", "box",
            "boat", "drum", "doll", "bell", "key", "map", "flower", "crayon", "sock", "cup", "stone",
            "teddy bear", "apple", "basket", "scarf", "star")
_ADJ = ("big", "small", "little", "happy", "sad", "shiny", "soft", "bright", "old", "new", "pretty",
        "funny", "brave", "kind", "gentle", "tiny", "fluffy", "colorful", "warm", "lovely", "friendly")
_FEEL = ("happy", "sad", "scared", "excited", "tired", "proud", "angry", "worried", "surprised", "curious",
         "lonely", "calm")
_WEATHER = ("the sun was shining", "it was a rainy day", "the wind was blowing", "the sky was blue",
            "it was very cold", "the birds were singing", "snow covered the ground", "it was a warm morning")
_PLAY = ("played", "ran", "jumped", "danced", "sang", "laughed", "walked", "skipped", "raced", "hopped")
_LOOK = ("looked under the bed", "looked behind the tree", "searched in the grass", "checked the big box",
         "asked the old man", "looked near the water", "climbed up the hill", "looked inside the house")
_TIME = ("One day", "One morning", "Later", "After lunch", "The next day", "That evening", "Soon",
         "Then", "After a while", "Suddenly")
_LESSON = ("sharing is good", "friends help each other", "it is good to be brave", "being kind is important",
           "you should never give up", "it is nice to say thank you", "listening is important")


def _story(rng: random.Random) -> str:
    """One story (≈8–14 sentences) around a hero, a companion animal, a place and an object."""
    girl = rng.random() < 0.5
    hero = rng.choice(_GIRLS if girl else _BOYS)
    he, his, him = ("she", "her", "her") if girl else ("he", "his", "him")
    He = he.capitalize()
    friend = rng.choice(_ANIMALS)
    place, place_adj = rng.choice(_PLACES)
    obj = rng.choice(_OBJECTS)
    adj = rng.choice(_ADJ)
    out = [
        rng.choice([f"Once upon a time, there was a {rng.choice(_ADJ)} {'girl' if girl else 'boy'} named {hero}.",
                    f"There once was a little {'girl' if girl else 'boy'} called {hero}.",
                    f"{hero} was a {rng.choice(_ADJ)} {'girl' if girl else 'boy'} who loved to play."]),
        f"{hero} had a {adj} {obj}. {He} loved {his} {obj} very much.",
        f"{hero} had a friend, a {rng.choice(_ADJ)} {friend}.",
    ]
    if rng.random() < 0.6:
        out.append(f"{rng.choice(_TIME)}, {rng.choice(_WEATHER)}, so {hero} and the {friend} went to {place}.")
    else:
        out.append(f"{rng.choice(_TIME)}, {hero} and the {friend} went to the {place_adj} {place[4:]}.")
    for _ in range(rng.randint(1, 3)):
        out.append(rng.choice([
            f"They {rng.choice(_PLAY)} and {rng.choice(_PLAY)} all day.",
            f"The {friend} {rng.choice(_PLAY)} around {hero}.",
            f"{hero} saw a {rng.choice(_ADJ)} {rng.choice(_ANIMALS)} near {place}.",
            f"{He} felt {rng.choice(_FEEL)} and {rng.choice(_PLAY)} with the {friend}.",
            f"\"Look, a {rng.choice(_ADJ)} {rng.choice(_OBJECTS)}!\" said {hero}.",
        ]))
    problem = rng.randrange(3)
    if problem == 0:  # lost object, found again
        out.append(f"{rng.choice(_TIME)}, {hero} could not find {his} {obj}. {He} was very {rng.choice(('sad', 'worried', 'upset'))}.")
        out.append(f"\"Where is my {obj}?\" {he} asked the {friend}.")
        for _ in range(rng.randint(1, 2)):
            out.append(f"{hero} {rng.choice(_LOOK)}, but the {obj} was not there.")
        out.append(f"Then the {friend} {rng.choice(('barked', 'jumped', 'ran off', 'made a sound', 'waved'))} and found the {obj}!")
        out.append(f"{hero} hugged the {friend}. \"Thank you!\" {he} said.")
    elif problem == 1:  # the friend is stuck, hero helps
        out.append(f"{rng.choice(_TIME)}, the {friend} got stuck in a {rng.choice(('tree', 'hole', 'bush', 'box', 'fence'))}.")
        out.append(f"The {friend} was {rng.choice(('scared', 'sad', 'crying'))}. \"Help me!\" it said.")
        out.append(f"{hero} was {rng.choice(('brave', 'kind', 'smart'))}. {He} used {his} {obj} to help the {friend}.")
        out.append(f"The {friend} was free! It was so {rng.choice(('happy', 'glad', 'thankful'))}.")
    else:  # sharing
        other = rng.choice([n for n in (_GIRLS + _BOYS) if n != hero])
        out.append(f"{rng.choice(_TIME)}, {other} came to {place}. {other} wanted to play with the {obj} too.")
        out.append(f"At first {hero} did not want to share. {He} felt {rng.choice(('angry', 'grumpy', 'unsure'))}.")
        out.append(f"Then {hero} gave the {obj} to {other}. They played together with the {friend}.")
    out.append(rng.choice([
        f"In the end, {hero} and the {friend} were best friends.",
        f"{hero} went home with the {friend}, tired and {rng.choice(('happy', 'proud', 'calm'))}.",
        f"That night, {hero} held {his} {obj} and fell asleep with a smile.",
        f"{hero} learned that {rng.choice(_LESSON)}.",
    ]))
    if rng.random() < 0.4:
        out.append(f"{hero} learned that {rng.choice(_LESSON)}.")
    return " ".join(out)


# ---------------------------------------------------------------------------------------------- recipes
# (ingredient, units it is measured in, kind: used to pick matching steps)
_INGREDIENTS = (
    ("flour", ("cups", "g", "tbsp"), "dry"), ("sugar", ("cups", "g", "tsp", "tbsp"), "dry"),
    ("brown sugar", ("cups", "g"), "dry"), ("salt", ("tsp", "pinch"), "dry"), ("baking powder", ("tsp",), "dry"),
    ("baking soda", ("tsp",), "dry"), ("cocoa powder", ("tbsp", "g"), "dry"), ("oats", ("cups", "g"), "dry"),
    ("rice", ("cups", "g"), "grain"), ("pasta", ("g", "oz"), "grain"), ("quinoa", ("cups",), "grain"),
    ("butter", ("g", "tbsp", "oz"), "fat"), ("olive oil", ("tbsp", "ml"), "fat"), ("vegetable oil", ("tbsp", "ml"), "fat"),
    ("milk", ("ml", "cups"), "wet"), ("water", ("ml", "cups", "l"), "wet"), ("cream", ("ml", "cups"), "wet"),
    ("eggs", ("",), "wet"), ("yogurt", ("g", "cups"), "wet"), ("stock", ("ml", "cups", "l"), "wet"),
    ("onion", ("",), "veg"), ("garlic cloves", ("",), "veg"), ("carrots", ("", "g"), "veg"), ("celery stalks", ("",), "veg"),
    ("tomatoes", ("", "g"), "veg"), ("potatoes", ("g", "kg", ""), "veg"), ("spinach", ("g", "cups"), "veg"),
    ("bell pepper", ("",), "veg"), ("mushrooms", ("g",), "veg"), ("zucchini", ("",), "veg"), ("lemon", ("",), "veg"),
    ("chicken breast", ("g", "kg", "lb"), "meat"), ("ground beef", ("g", "lb"), "meat"), ("salmon fillets", ("", "g"), "meat"),
    ("tofu", ("g",), "meat"), ("chickpeas", ("g", "cans"), "meat"), ("bacon", ("slices", "g"), "meat"),
    ("cheddar cheese", ("g", "cups"), "top"), ("parmesan", ("g", "tbsp"), "top"), ("parsley", ("tbsp", "bunch"), "top"),
    ("basil leaves", ("", "tbsp"), "top"), ("black pepper", ("tsp", "pinch"), "top"), ("cumin", ("tsp",), "top"),
    ("paprika", ("tsp",), "top"), ("cinnamon", ("tsp",), "top"), ("vanilla extract", ("tsp",), "top"),
    ("chili flakes", ("tsp", "pinch"), "top"), ("honey", ("tbsp",), "top"), ("soy sauce", ("tbsp", "ml"), "top"),
)
_DISH_ADJ = ("Easy", "Quick", "Classic", "Creamy", "Spicy", "Roasted", "Baked", "Simple", "Rustic",
             "Lemon", "Garlic", "Herb", "Golden", "Crispy", "Weeknight", "Hearty", "Smoky", "Honey")
_DISH = ("Soup", "Stew", "Bread", "Muffins", "Pancakes", "Salad", "Curry", "Casserole", "Pie", "Risotto",
         "Frittata", "Cookies", "Cake", "Stir Fry", "Pasta Bake", "Tacos", "Porridge", "Skillet", "Traybake")
_QTY_SMALL = ("1", "2", "3", "4", "1/2", "1/4", "3/4", "1 1/2")  # spoons, cups, pounds
_QTY_COUNT = ("1", "2", "3", "4", "5", "6", "8")                  # whole items (eggs, onions)
_QTY_MASS = ("50", "100", "150", "200", "250", "300", "400", "500")  # g, ml
_PREP = {"veg": ("chopped", "diced", "sliced", "minced", "grated", "peeled", "rinsed"),
         "meat": ("diced", "sliced", "cut into strips", "drained"),
         "wet": ("beaten", "warmed", "at room temperature"), "top": ("grated", "chopped", "to taste")}
_OVEN = ((160, 325), (170, 340), (180, 350), (190, 375), (200, 400), (220, 425))
_MIX = ("Whisk", "Stir", "Mix", "Combine", "Fold", "Beat")
_HEAT = ("Bake", "Roast", "Simmer", "Cook", "Fry", "Grill", "Boil", "Steam")
_VESSEL = ("a large bowl", "a medium saucepan", "a baking dish", "a frying pan", "a deep pot", "a skillet",
           "a small bowl", "a lined baking tray", "a food processor")
_UNTIL = ("until golden brown", "until soft", "until smooth", "until fragrant", "until the edges are crisp",
          "until tender", "until thick", "until bubbling", "until cooked through", "until well combined")


def _amount(rng: random.Random, name: str, units: tuple, kind: str) -> str:
    """An ingredient line such as ``"1/2 cup milk"`` or ``"3 garlic cloves, minced"``."""
    unit = rng.choice(units)
    if unit == "pinch":
        return f"a pinch of {name}"
    if unit == "bunch":
        return f"1 bunch {name}"
    if unit in ("g", "ml"):
        q = rng.choice(_QTY_MASS)
    elif unit in ("", "slices", "cans", "kg", "l"):
        q = rng.choice(_QTY_COUNT[:3] if unit in ("kg", "l") else _QTY_COUNT)
    else:
        q = rng.choice(_QTY_SMALL)
    if unit == "cups" and q in ("1", "1/2", "1/4", "3/4"):
        unit = "cup"
    line = f"{q} {unit} {name}" if unit else f"{q} {name}"
    if kind in _PREP and rng.random() < 0.35:
        line += f", {rng.choice(_PREP[kind])}"
    return line


def _recipe(rng: random.Random) -> str:
    """One recipe: title, servings/times, ingredient list, numbered steps referring back to the list."""
    chosen = rng.sample(_INGREDIENTS, rng.randint(4, 9))
    main = [n for n, _, k in chosen if k in ("veg", "meat", "grain")] or [chosen[0][0]]
    title = f"{rng.choice(_DISH_ADJ)} {main[0].title()} {rng.choice(_DISH)}"
    prep, cook = rng.choice((5, 10, 15, 20, 25, 30)), rng.choice((10, 15, 20, 25, 30, 40, 45, 60, 90))
    lines = [title, f"Serves {rng.randint(1, 8)}. Prep time: {prep} minutes. Cook time: {cook} minutes.", "Ingredients:"]
    lines += [f"- {_amount(rng, n, u, k)}" for n, u, k in chosen]
    by_kind: dict[str, list[str]] = {}
    for n, _, k in chosen:
        by_kind.setdefault(k, []).append(n)

    def join(names: list[str]) -> str:
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    steps = []
    if rng.random() < 0.6:
        c, f = rng.choice(_OVEN)
        steps.append(f"Preheat the oven to {c} degrees C ({f} F).")
    if "veg" in by_kind:
        steps.append(f"Wash and {rng.choice(('chop', 'dice', 'slice'))} the {join(by_kind['veg'])}.")
    if "fat" in by_kind:
        steps.append(f"Heat the {by_kind['fat'][0]} in {rng.choice(_VESSEL)} over {rng.choice(('low', 'medium', 'high'))} heat.")
    if "meat" in by_kind:
        steps.append(f"Add the {join(by_kind['meat'])} and {rng.choice(_HEAT).lower()} for {rng.randint(3, 12)} minutes, turning once.")
    if "dry" in by_kind:
        steps.append(f"{rng.choice(_MIX)} the {join(by_kind['dry'])} in {rng.choice(_VESSEL)}.")
    if "wet" in by_kind:
        steps.append(f"In a separate bowl, {rng.choice(_MIX).lower()} the {join(by_kind['wet'])} {rng.choice(_UNTIL)}.")
    if "grain" in by_kind:
        steps.append(f"Boil the {by_kind['grain'][0]} in salted water for {rng.randint(8, 20)} minutes, then drain.")
    steps.append(f"{rng.choice(_HEAT)} for {rng.choice((5, 10, 15, 20, 25, 30, 35, 40))} minutes {rng.choice(_UNTIL)}.")
    if "top" in by_kind:
        steps.append(f"Season with the {join(by_kind['top'])}. Taste and adjust.")
    steps.append(rng.choice(("Serve warm.", "Let cool for 10 minutes before serving.", "Serve immediately.",
                             "Store in an airtight container for up to 3 days.", "Garnish and serve with bread.")))
    lines.append("Steps:")
    lines += [f"{i}. {s}" for i, s in enumerate(steps, 1)]
    if rng.random() < 0.3:
        lines.append(f"Tip: you can replace the {chosen[-1][0]} with {rng.choice(_INGREDIENTS)[0]}.")
    return "\n".join(lines)


CORPORA: dict[str, Callable[[random.Random], str]] = {"stories": _story, "recipes": _recipe}


def generate(name: str, n_docs: int, seed: int = 0) -> list[str]:
    """``n_docs`` documents of the built-in corpus ``name`` (``"stories"`` or ``"recipes"``).

    Deterministic: the same ``(name, n_docs, seed)`` gives the same list, and a longer list extends a
    shorter one with the same seed (document ``i`` does not depend on ``n_docs``).
    """
    if name not in CORPORA:
        raise unknown_name("corpus", name, list(CORPORA))
    if not isinstance(n_docs, int) or isinstance(n_docs, bool) or n_docs < 1:
        raise ConfigError(f"n_docs must be a positive integer, got {n_docs!r}.")
    rng = random.Random(f"workbench-corpus:{name}:{int(seed)}")
    make = CORPORA[name]
    return [make(rng) for _ in range(n_docs)]
