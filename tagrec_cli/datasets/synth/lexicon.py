"""The synthetic data's words: genres, tag themes and their tags, noise tags, the long tail of
rare tags (theme phrases, people, remarks) and movie titles. Pure functions of word lists and
hashes; the random draws that use them are in world.py.
"""

from __future__ import annotations

import numpy as np
import polars as pl

# The 18 MovieLens genres ("(no genres listed)" is written when a movie has none).
GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)
NO_GENRES = "(no genres listed)"

# Theme -> (associated genres, base tags, most frequent first). Case and whitespace variants of
# each base tag are added in tag_vocabulary(); normalised (strip + lower) tags are unique across
# themes so a tag names exactly one theme (see TAG_THEMES).
THEMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "noir": (("Crime", "Film-Noir", "Mystery", "Thriller"),
             ("dark", "noir", "atmospheric", "femme fatale", "bleak", "moody")),
    "feel-good": (("Comedy", "Drama", "Romance", "Children"),
                  ("feel-good", "heartwarming", "uplifting", "charming", "wholesome")),
    "twist": (("Thriller", "Mystery", "Drama", "Crime"),
              ("twist ending", "plot twist", "unreliable narrator", "surprise ending",
               "didn't see that coming")),
    "heist": (("Crime", "Action", "Thriller", "Comedy"),
              ("heist", "caper", "bank robbery", "clever plan", "con artists")),
    "space": (("Sci-Fi", "Adventure", "Action"),
              ("space", "space opera", "aliens", "spaceship", "astronauts", "zero gravity")),
    "animation": (("Animation", "Children", "Comedy", "Adventure", "Fantasy"),
                  ("pixar-like", "animated", "talking animals", "cute", "great for kids")),
    "romance": (("Romance", "Comedy", "Drama"),
                ("romantic", "love story", "romcom", "chemistry", "wedding")),
    "superhero": (("Action", "Adventure", "Sci-Fi", "Fantasy"),
                  ("superhero", "comic book", "origin story", "secret identity", "villain")),
    "bittersweet": (("Drama", "Comedy", "Romance"),
                    ("bittersweet", "funny, but sad", "tearjerker", "melancholy", "grief")),
    "whimsy": (("Comedy", "Romance", "Fantasy", "Drama"),
               ("amélie-esque", "whimsical", "quirky", "café", "paris", "français")),
    "horror": (("Horror", "Thriller", "Mystery"),
               ("scary", "creepy", "gore", "jump scares", "haunted house", "slasher")),
    "war": (("War", "Drama", "Action"),
            ("war", "wwii", "battle scenes", "anti-war", "soldiers")),
    "mob": (("Crime", "Drama", "Thriller"),
            ("mafia", "gangsters", "organized crime", "betrayal", "violence")),
    "mind-bending": (("Sci-Fi", "Mystery", "Thriller", "Drama"),
                     ("mind-bending", "time travel", "nonlinear", "philosophical",
                      "thought-provoking", "dreams")),
    "dystopia": (("Sci-Fi", "Drama", "Action"),
                 ("dystopia", "post-apocalyptic", "surveillance", "totalitarian", "rebellion")),
    "slapstick": (("Comedy", "Children"),
                  ("hilarious", "slapstick", "absurd", "quotable", "silly")),
    "musical": (("Musical", "Romance", "Comedy", "Animation"),
                ("musical", "great soundtrack", "singing", "dance", "broadway")),
    "western": (("Western", "Action", "Drama"),
                ("cowboys", "gunfight", "frontier", "outlaws", "spaghetti western")),
    "coming-of-age": (("Drama", "Comedy", "Romance"),
                      ("coming of age", "high school", "teenagers", "nostalgic",
                       "first love", "summer")),
    "true-story": (("Drama", "Documentary", "War", "Crime"),
                   ("based on a true story", "biopic", "historical", "true story",
                    "inspiring")),
    "martial-arts": (("Action", "Adventure", "Thriller"),
                     ("martial arts", "kung fu", "car chase", "explosions", "fight scenes")),
    "fantasy": (("Fantasy", "Adventure", "Children", "Animation"),
                ("magic", "dragons", "fairy tale", "epic", "wizards", "quest")),
}
# Noise tags: applied regardless of the movie's themes.
NOISE_TAGS: tuple[str, ...] = (
    "seen it", "netflix", "dvd", "to watch", "overrated", "classic", "must see", "boring",
    "rewatch", "in netflix queue", "meh", "watched on a plane", "ok", "favorite",
)


# Title word lists (made up; combinations may coincide with real titles by chance).
_ADJ = (
    "Silent", "Broken", "Golden", "Last", "Hidden", "Crimson", "Endless", "Little", "Midnight",
    "Burning", "Lonely", "Wild", "Frozen", "Forgotten", "Electric", "Velvet", "Savage", "Gentle",
    "Hollow", "Bright", "Iron", "Paper", "Glass", "Secret", "Lost", "Final", "Restless", "Quiet",
    "Distant", "Sweet", "Bitter", "Crooked", "Lucky", "Perfect", "Strange", "Dangerous", "Blue",
    "Scarlet", "Northern", "Painted", "Sleeping", "Falling", "Wandering", "Second", "Naked",
    "Tender", "Dusty", "Neon", "Clockwork", "Invisible",
)
_NOUN = (
    "Road", "River", "Summer", "Winter", "Garden", "Heart", "City", "Shadow", "Kingdom", "Promise",
    "Mirror", "Storm", "Island", "Harbor", "Dream", "Horizon", "Station", "Empire", "Hotel",
    "Letter", "Game", "Machine", "Orchard", "Circus", "Frontier", "Signal", "Planet", "Detective",
    "Stranger", "Witness", "Job", "Ballad", "Crown", "Voyage", "Tide", "Lantern", "Echo", "Hunter",
    "Angel", "Thief", "Bridge", "Castle", "Engine", "Sister", "Brother", "Daughter", "Kiss",
    "Window", "Moon", "Desert", "Forest", "Train", "Saint", "Wolf", "Night", "Song", "Fever",
    "Secret", "Season", "Affair",
)
_NAME = (
    "Harry", "Lucy", "Max", "Eleanor", "Jack", "Rosa", "Otto", "Mabel", "Vincent", "Clara", "Hugo",
    "Nina", "Felix", "Ada", "Bruno", "Iris", "Zoë", "Björn", "José", "Chloé", "Søren", "Inés",
    "Walter", "Greta", "Sam", "Dolores", "Frank", "Ruby", "Leo", "Marguerite",
)
_SURNAME = ("Moreno", "Kowalski", "Brennan", "Okafor", "Lindqvist", "Duval", "Tanaka", "Müller",
            "García", "O'Hara")
_NICK = ("The Knife", "Lucky", "Doc", "Slim", "Ace", "Red")
_PLACE = (
    "Paris", "Tokyo", "Chicago", "Lisbon", "Memphis", "Berlin", "Kraków", "São Paulo", "Reykjavík",
    "Montréal", "Istanbul", "Nairobi", "Vienna", "Havana", "Brooklyn", "Marseille", "Texas", "Rome",
)
_ALT = (  # foreign-language alternative titles, written "English Title (Alt Title) (1999)"
    "Le Dernier Été", "La Ciudad Perdida", "Der Stille Fluss", "Il Giardino Segreto",
    "Den Sista Sommaren", "Le Cœur Brisé", "El Sueño Eterno", "Die Dunkle Straße",
    "La Nuit Étrangère", "O Último Verão", "Mørkets Hjerte", "Les Enfants du Fleuve",
)
_SEQUEL = (" 2", " II", " III", ": Part Two", " 3")
# A title's pattern, drawn with the shares titles() gives; a leading article goes at the end.
_TITLE_PATTERNS = ("{adj} {noun}", "{adj} {noun}, The", "{noun} of the {noun2}",
                   "{noun} of the {noun2}, The", "{name}'s {noun}", "{noun} in {place}, A",
                   "{adj} {noun} in {place}", "{name} and the {adj} {noun}",
                   "{adj} {noun} ({alt})", '{name} "{nick}" {surname}')


# ---------------------------------------------------------------- long tail of rare tags
# Besides the theme and noise vocabularies, about half of all tag applications come from a
# long tail, as in real MovieLens (ML-25M: ~73k distinct tags, hundreds of distinct tags on
# its most tagged movies). Each movie has a practically unbounded sequence of "facets" (facet j
# of movie m is a fixed tag, so users repeat a movie's first facets); a long-tail row picks
# facet j < FACET_SPACE with P(j) ~ (j + 1)^-FACET_EXPONENT, a tail so heavy that most picks
# are new facets: a movie's distinct tags grow almost in proportion to its tag rows. A facet is
# a theme phrase of one of the movie's themes ("clever heist movie": keeps the theme signal), a
# person ("Rosa Okafor") or a general remark ("great dialogue"), drawn by a power law over a
# combinatorial vocabulary (~400k strings), so the number of distinct tags grows with the data.
# At MovieLens-25M size (seed 42): ~107k distinct tags, up to ~1,900 on one movie, ~46k movies
# tagged. Taggers also favour popular movies (TAG_POPULARITY), as real taggers do.
LONG_TAIL_SHARE = 0.5  # share of tag rows from the long tail
TAG_POPULARITY = 0.4  # taggers favour popular movies among those they rated: weight pop^this
FACET_EXPONENT = 0.95
FACET_SPACE = 1 << 24  # facets per movie (effectively unbounded)
LONG_TAIL_FAMILIES = (0.45, 0.25, 0.30)  # theme phrase, person, general remark
VOCAB_EXPONENT = 1.05  # power law over each family's vocabulary ranks

_MOD = (
    "great", "clever", "stylish", "gritty", "classic", "underrated", "brilliant", "slow",
    "tense", "fun", "beautiful", "realistic", "over the top", "smart", "intense", "cheesy",
    "good", "bad", "best", "weird", "original", "predictable", "low budget", "british", "french",
    "japanese", "korean", "italian", "90s", "80s", "70s", "modern", "old school", "stylized",
    "subtle", "campy", "cult", "indie", "hollywood", "overrated", "unique", "generic",
    "surprisingly good", "mediocre", "awesome", "lighthearted", "violent", "clichéd", "epic",
    "understated",
)
_SUFFIX = (
    "movie", "film", "classic", "done right", "elements", "vibes", "at its best", "gone wrong",
    "story", "scenes", "themes", "references", "parody", "remake", "sequel", "tropes",
    "masterpiece", "flick", "homage", "fans",
)
_FIRST = _NAME + (
    "Anna", "Pedro", "Mei", "Tomás", "Ingrid", "Kofi", "Yuki", "Oskar", "Amara", "Luca",
    "Sofia", "Arjun", "Helga", "Dmitri", "Fatima", "Kenji", "Elif", "Rafael", "Noor", "Emil",
    "Camille", "Diego", "Hana", "Ivan", "Jonas", "Leila", "Mateo", "Olga", "Priya", "Sven",
    "Tariq", "Ursula", "Viktor", "Wanda", "Xavier", "Yara", "Zofia", "Agnès", "Benedikt",
    "Carmen", "Dario", "Esther", "François", "Gustav", "Hiroshi", "Ines", "Joaquín", "Katja",
    "Lars", "Miriam", "Nikolai", "Ophelia", "Pablo", "Quentin", "Renée", "Stellan", "Thea",
    "Umberto", "Vera", "Wes", "Yusuf", "Aki", "Bette", "Cyrus", "Delphine", "Errol", "Fumiko",
    "Gene", "Hedy",
)
_LAST = _SURNAME + (
    "Andersson", "Bianchi", "Castillo", "Dubois", "Eriksen", "Fischer", "Gallagher", "Hoffmann",
    "Ivanova", "Jansen", "Kaur", "Lefèvre", "Mendoza", "Nakamura", "Oliveira", "Petrov",
    "Quinn", "Rossi", "Schmidt", "Takahashi", "Uysal", "Varga", "Weber", "Yamamoto", "Zielinski",
    "Abbott", "Becker", "Chen", "Delacroix", "Esposito", "Fontaine", "Grünewald", "Haddad",
    "Iglesias", "Jovanović", "Kim", "Lindgren", "Marchetti", "Novak", "Ortega", "Park",
    "Rahman", "Santos", "Tremblay", "Underwood", "Vasquez", "Whitfield", "Xu", "Yilmaz", "Zhao",
    "Ashby", "Bergman", "Costa", "Dvořák", "Elliott", "Ferreira", "Greenberg", "Holm", "Ito",
    "Jensen", "Kovač", "Lam", "Moreau", "Nilsen", "O'Connor", "Pereira", "Russo", "Sato",
    "Thornton", "Ueda", "Vidal", "Wagner", "Yates", "Zeller", "Almeida", "Brandt", "Carter",
    "Diaz", "Engel", "Fox", "Guerrero", "Hale", "Ibsen", "Jaramillo", "Keller", "Lowe",
    "Meyer", "Nash", "Orsini", "Pike", "Reyes", "Sandoval", "Toth", "Vance", "Winter", "Young",
)
_INITIAL = tuple("ABCDEFGHIJKLMNOPRSTVW")
_QUALITY = (
    "beautiful", "great", "stunning", "bad", "good", "brilliant", "amazing", "weak", "excellent",
    "terrible", "awesome", "memorable", "clever", "witty", "gorgeous", "strong", "poor",
    "fantastic", "wonderful", "awkward", "clunky", "sharp", "lush", "sparse", "haunting",
    "incredible", "solid", "wooden", "natural", "superb", "lovely", "cheap", "stylish",
    "confusing", "perfect", "forgettable", "striking", "subtle", "bold", "sloppy", "tight",
    "loose", "unusual", "iconic", "catchy", "hammy", "uneven", "breathtaking", "inventive",
    "nuanced", "cringey", "flat", "gripping", "overlong", "quiet", "moving",
)
_ASPECT = (
    "cinematography", "acting", "dialogue", "songs", "visuals", "script", "ending", "plot",
    "characters", "direction", "score", "special effects", "costumes", "pacing", "humor",
    "cast", "photography", "atmosphere", "performances", "writing", "editing", "music",
    "set design", "camera work", "action scenes", "premise", "ensemble cast", "monologues",
    "opening scene", "final scene", "car scenes", "fight choreography", "lighting", "colors",
    "sound design", "makeup", "one-liners", "voice acting", "story", "storytelling",
    "character development", "world building", "production design", "screenplay", "casting",
    "narration", "chase scene", "climax", "title sequence", "score by hans", "practical effects",
    "cgi", "long takes", "close-ups", "landscapes",
)
_ADV = (
    "visually", "very", "really", "incredibly", "surprisingly", "beautifully", "darkly",
    "painfully", "strangely", "mildly", "overly", "genuinely", "quietly", "utterly", "deeply",
    "oddly",
)
_FEEL = (
    "funny", "stunning", "appealing", "moving", "slow", "disturbing", "clever", "weird",
    "beautiful", "boring", "tense", "violent", "realistic", "sad", "romantic", "confusing",
    "intense", "predictable", "original", "touching", "stylish", "long", "silly", "bleak",
    "hopeful", "cynical", "smart", "gory", "charming", "awkward", "brutal", "poetic",
    "satisfying", "frustrating", "dated", "timeless", "ambitious", "pretentious", "unsettling",
    "entertaining",
)
_SOURCE = (
    "book", "comic", "play", "video game", "tv show", "novel", "short story", "song",
    "true events", "manga", "musical", "poem", "board game", "graphic novel", "fairy tale",
    "podcast", "memoir", "newspaper article", "toy line", "radio play",
)
_SETTING = _PLACE + (
    "new york", "los angeles", "london", "hong kong", "mumbai", "seoul", "mexico city",
    "the desert", "the suburbs", "a small town", "space", "the 1950s", "the 1920s", "the future",
    "the arctic", "the jungle", "a prison", "a hospital", "a boarding school", "the ocean",
    "a submarine", "a train", "an island", "a lighthouse", "the wild west", "victorian england",
    "ancient rome", "feudal japan", "the cold war", "the 80s", "new orleans", "alaska",
    "scotland", "ireland", "sicily", "the outback", "antarctica", "a spaceship", "a casino",
)


def _long_tail_blocks() -> list[list[tuple[str | tuple[str, ...], ...]]]:
    """Vocabulary blocks: one per theme (its phrases), then people, then general remarks.

    A block is a list of tiers, commonest first; a tier is a sequence of parts, each a literal
    string or a word list, and holds every combination of its word lists.
    """
    blocks = []
    for _, base in THEMES.values():
        blocks.append([(_MOD, " ", base), (base, " ", _SUFFIX), (_MOD, " ", base, " ", _SUFFIX)])
    blocks.append([(_FIRST, " ", _LAST), (_FIRST, " ", _INITIAL, ". ", _LAST)])
    blocks.append([(_QUALITY, " ", _ASPECT), (_ADV, " ", _FEEL), ("based on a ", _SOURCE),
                   ("set in ", _SETTING), (_ADV, " ", _FEEL, " ", _ASPECT),
                   (_ADV, " ", _FEEL, " ", _SOURCE, " adaptation")])
    return blocks


def _tier_size(tier: tuple[str | tuple[str, ...], ...]) -> int:
    return int(np.prod([len(p) for p in tier if isinstance(p, tuple)]))


def _block_sizes() -> np.ndarray:
    return np.array([sum(_tier_size(t) for t in b) for b in _long_tail_blocks()], dtype=np.int64)


def _scramble(idx: np.ndarray, size: int) -> np.ndarray:
    """A fixed permutation of 0..size-1 (so that neighbouring ranks differ in every word)."""
    mult = next(p for p in (1_000_003, 999_983, 1_000_033, 7919) if np.gcd(p, size) == 1)
    return (idx * mult + size // 3) % size


def _long_tail_strings(codes: np.ndarray) -> pl.Series:
    """Tag strings of long-tail codes (block offset + rank within the block), vectorised."""
    codes = np.asarray(codes, dtype=np.int64)
    out = pl.Series("tag", [None] * codes.size, dtype=pl.String)
    offsets = np.r_[0, np.cumsum(_block_sizes())]
    for b, block in enumerate(_long_tail_blocks()):
        lo = offsets[b]
        for tier in block:
            size = _tier_size(tier)
            sel = np.flatnonzero((codes >= lo) & (codes < lo + size))
            lo += size
            if sel.size == 0:
                continue
            rest = _scramble(codes[sel] - (lo - size), size)
            cols = []
            for part in reversed(tier):  # mixed radix, last word list varies fastest
                if isinstance(part, tuple):
                    cols.append(pl.Series(part, dtype=pl.String).gather(rest % len(part)))
                    rest = rest // len(part)
                else:
                    cols.append(pl.lit(part, dtype=pl.String))
            strings = pl.select(pl.concat_str(cols[::-1])).to_series()
            out = out.scatter(sel, strings)
    return out


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-mixed uint64 hash of each uint64."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _unit(h: np.ndarray) -> np.ndarray:
    """uint64 hashes -> uniform floats in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def power_law_rank(u: np.ndarray, exponent: float, n: int | np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with P(r) roughly ~ (r + 1)^-exponent, from uniforms u (exponent != 1)."""
    top = (np.asarray(n, dtype=np.float64) + 1.0) ** (1.0 - exponent)
    x = (1.0 + u * (top - 1.0)) ** (1.0 / (1.0 - exponent))
    return np.clip(x.astype(np.int64) - 1, 0, np.asarray(n) - 1)


def facet_codes(facet_key: np.ndarray, themes: np.ndarray, theme_w: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Long-tail code and theme (-1: none) of each facet, a pure function of its key.

    facet_key: (N,) uint64 (movie, facet, seed) keys; themes, theme_w: (N, 3) of the movie.
    """
    k = len(THEMES)
    u1, u2, u3 = (_unit(_mix64(facet_key * np.uint64(3) + np.uint64(i))) for i in range(3))
    family = (u1[:, None] >= np.cumsum(LONG_TAIL_FAMILIES)[:2]).sum(axis=1)  # 0, 1, 2
    slot = (u2[:, None] >= np.cumsum(theme_w, axis=1)[:, :2]).sum(axis=1)
    theme = themes[np.arange(themes.shape[0]), slot]
    block = np.where(family == 0, theme, k + family - 1)
    sizes = _block_sizes()
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    code = offsets[block] + power_law_rank(u3, VOCAB_EXPONENT, sizes[block])
    return code, np.where(family == 0, theme, -1)



def tag_vocabulary() -> tuple[list[str], np.ndarray, np.ndarray]:
    """All tag strings with their group (theme index, or K for noise) and relative weight."""
    strings: list[str] = []
    groups: list[int] = []
    weights: list[float] = []
    bases = [tags for _, tags in THEMES.values()] + [NOISE_TAGS]
    for g, base_tags in enumerate(bases):
        for rank, base in enumerate(base_tags):
            w = 1.0 / (rank + 1) ** 0.8  # Zipf-ish: a theme's first tag is the commonest
            variants = [(base, 0.78 * w), (base.title(), 0.14 * w), (base.upper(), 0.02 * w),
                        (" " + base, 0.03 * w), (base + " ", 0.03 * w)]
            seen: set[str] = set()
            for s, vw in variants:
                if s in seen:  # e.g. "wwii".upper() == "WWII" == "wwii".title().upper()
                    continue
                seen.add(s)
                strings.append(s)
                groups.append(g)
                weights.append(vw)
    return strings, np.array(groups, dtype=np.int64), np.array(weights)


TAG_THEMES: dict[str, str] = {  # normalised tag -> theme name
    t.strip().lower(): name for name, (_, tags) in THEMES.items() for t in tags
}


def titles(rng: np.random.Generator, years: np.ndarray) -> list[str]:
    """Titles "Name (1999)" from word lists; MovieLens puts a leading article at the end."""
    n = len(years)
    pat = rng.choice(10, size=n, p=[0.2, 0.15, 0.1, 0.1, 0.12, 0.06, 0.08, 0.06, 0.1, 0.03])
    a = rng.integers(0, len(_ADJ), n).tolist()
    b = rng.integers(0, len(_NOUN), n).tolist()
    c = rng.integers(0, len(_NOUN), n).tolist()
    nm = rng.integers(0, len(_NAME), n).tolist()
    pl_ = rng.integers(0, len(_PLACE), n).tolist()
    alt = rng.integers(0, len(_ALT), n).tolist()
    sur = rng.integers(0, len(_SURNAME), n).tolist()
    nick = rng.integers(0, len(_NICK), n).tolist()
    seq = np.where(rng.random(n) < 0.04, rng.integers(0, len(_SEQUEL), n), -1).tolist()
    out = []
    for i, p in enumerate(pat.tolist()):  # cheap: one short format per movie
        t = _TITLE_PATTERNS[p].format(
            adj=_ADJ[a[i]], noun=_NOUN[b[i]], noun2=_NOUN[c[i]], name=_NAME[nm[i]],
            place=_PLACE[pl_[i]], alt=_ALT[alt[i]], nick=_NICK[nick[i]], surname=_SURNAME[sur[i]])
        if seq[i] >= 0:
            t += _SEQUEL[seq[i]]
        out.append(f"{t} ({years[i]})")
    return out


def spelling_variants(codes: np.ndarray, variant: np.ndarray) -> pl.Series:
    """Long-tail strings: variant 0 as generated, 1 other case (names lowercased, phrases
    Title Cased), 2 with a stray leading or trailing space."""
    k = len(THEMES)
    offsets = np.r_[0, np.cumsum(_block_sizes())]
    person = pl.Series((codes >= offsets[k]) & (codes < offsets[k + 1]))
    df = pl.DataFrame({"s": _long_tail_strings(codes), "v": variant, "person": person,
                       "odd": codes % 2 == 1})
    s, v = pl.col("s"), pl.col("v")
    return df.select(
        tag=pl.when(v == 0).then(s)
        .when(v == 1).then(pl.when("person").then(s.str.to_lowercase())
                           .otherwise(s.str.to_titlecase()))
        .when("odd").then(pl.concat_str([s, pl.lit(" ")]))
        .otherwise(pl.concat_str([pl.lit(" "), s])))["tag"]
