"""Seeded synthetic MovieLens-format data: movies.csv, ratings.csv, tags.csv.

The files have the columns, header, quoting and CRLF line ends of MovieLens ml-latest-small; no
MovieLens data is used, only the format. The data has learnable structure: movies mix a few
"tag themes" (correlated with their genres), users have latent tastes over themes and genres,
pick movies by popularity x taste and rate them by taste + quality + bias + noise, and the few
users who tag describe the movies with their themes' vocabularies plus a long tail of rare
tags (theme phrases, people, remarks), so that, as in real MovieLens, the number of distinct tags
grows with the data and the most tagged movies carry hundreds of them. Everything is vectorised
numpy (MovieLens-25M scale runs in under a minute) and reproducible byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
# each base tag are added in _vocabulary(); normalised (strip + lower) tags are unique across
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

# Target share of each rating 0.5, 1.0, ..., 5.0 (own choice: 14.5% below 2.5, mean 3.47).
RATING_SHARES = np.array([0.015, 0.03, 0.025, 0.075, 0.06, 0.19, 0.14, 0.25, 0.09, 0.125])
DATA_START = 820_454_400  # 1996-01-01 UTC: first possible rating
DATA_END = 1_704_067_199  # 2023-12-31 23:59:59 UTC: last possible rating or tag
LINE_END = "\r\n"  # ml-latest-small's CSVs end lines with CRLF
DAY = 86_400

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


def _power_law_rank(u: np.ndarray, exponent: float, n: int | np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with P(r) roughly ~ (r + 1)^-exponent, from uniforms u (exponent != 1)."""
    top = (np.asarray(n, dtype=np.float64) + 1.0) ** (1.0 - exponent)
    x = (1.0 + u * (top - 1.0)) ** (1.0 / (1.0 - exponent))
    return np.clip(x.astype(np.int64) - 1, 0, np.asarray(n) - 1)


def _facet_codes(facet_key: np.ndarray, themes: np.ndarray, theme_w: np.ndarray,
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
    code = offsets[block] + _power_law_rank(u3, VOCAB_EXPONENT, sizes[block])
    return code, np.where(family == 0, theme, -1)


@dataclass(frozen=True)
class SynthSummary:
    """What generate_movielens wrote."""

    out_dir: Path
    n_users: int
    n_movies: int
    n_ratings: int
    n_tags: int  # tag application rows


@dataclass(frozen=True)
class _World:
    """Generated tables plus the latent variables behind them (for tests and diagnostics)."""

    movies: pl.DataFrame
    ratings: pl.DataFrame
    tags: pl.DataFrame
    movie_ids: np.ndarray  # (M,) int64 movieId of movie index m
    movie_themes: np.ndarray  # (M, 3) int theme indices, slot 0 = main theme
    movie_theme_w: np.ndarray  # (M, 3) float weights summing to 1 (0 for unused slots)
    user_theme_pref: np.ndarray  # (U, K) float latent theme taste, userId = row + 1
    user_genre_pref: np.ndarray  # (U, G) float latent genre taste
    tag_theme: np.ndarray  # (T,) theme index of each tags row (-1: noise, person, remark)
    tag_long_tail: np.ndarray  # (T,) bool: the tags row is from the long tail


def generate_movielens(out_dir: Path, n_users: int = 600, n_movies: int = 1500, seed: int = 42,
                       ratings_per_user: float = 80.0,
                       tag_applications: int | None = None) -> SynthSummary:
    """Write movies.csv, ratings.csv and tags.csv for a synthetic MovieLens into out_dir.

    ratings_per_user is the target mean: each user gets min(20, mean / 2) plus a heavy-tailed
    extra, capped at half the movies released before their active window ends (so small
    catalogues give fewer). tag_applications=None means round(4.5% of the ratings); fewer are
    written only when taggers run out (at most 4 per movie they rated). The same arguments
    always give byte-identical files.
    """
    world = _simulate(n_users, n_movies, seed, ratings_per_user, tag_applications)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_all(out_dir, {"movies.csv": world.movies, "ratings.csv": world.ratings,
                         "tags.csv": world.tags})
    return SynthSummary(out_dir=out_dir, n_users=n_users, n_movies=n_movies,
                        n_ratings=world.ratings.height, n_tags=world.tags.height)


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Ctrl-C inside the block takes effect when it ends. A handler, not a signal mask: a
    mask holds back only this thread's signals, and polars' threads would still take it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (and only it gets KeyboardInterrupt)
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _write_all(out_dir: Path, frames: dict[str, pl.DataFrame]) -> None:
    """Write every CSV under a temporary name first (artifacts' names, which recover() and
    `tagrec clean` know), then rename them all into place with Ctrl-C held back: the folder
    has the old set or the new one, never a mix (`sample-data --force` over a dataset)."""
    from tagrec_cli.artifacts import recover

    tmps = {name: out_dir / f".{name}.tmp-{os.getpid()}" for name in frames}
    try:
        for name, df in frames.items():
            recover(out_dir, name)  # what a killed run left
            df.write_csv(tmps[name], line_terminator=LINE_END, check_extension=False)
        with _ctrl_c_held():
            for name in frames:
                os.replace(tmps[name], out_dir / name)
    finally:
        # polars raises KeyboardInterrupt from inside a write and Python's handler raises it
        # again at the next line: the clean-up must outlast that second one
        again = None
        for tmp in tmps.values():
            while True:
                try:
                    tmp.unlink(missing_ok=True)
                    break
                except KeyboardInterrupt as exc:
                    again = exc
        if again is not None:
            raise again


def _vocabulary() -> tuple[list[str], np.ndarray, np.ndarray]:
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


def _grouped_cdf(groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Flat CDF for _grouped_choice: entries sorted by group, value = group + CDF within group.

    groups must be sorted ascending; each group must have positive total weight.
    """
    csum = np.cumsum(weights)
    last = np.r_[np.flatnonzero(np.diff(groups)), len(groups) - 1]  # last index of each group
    first = np.r_[0, last[:-1] + 1]
    before = csum[first] - weights[first]  # cumulative weight before each group
    total = csum[last] - before
    gi = np.repeat(np.arange(len(last)), last - first + 1)
    cdf = (csum - before[gi]) / total[gi]
    cdf[last] = 1.0
    return groups.astype(np.float64) + cdf


def _grouped_choice(rng: np.random.Generator, flat_cdf: np.ndarray,
                    query_groups: np.ndarray) -> np.ndarray:
    """For each query group g, an entry index within g drawn in proportion to its weight.

    flat_cdf is from _grouped_cdf; group g occupies values in (g, g + 1], so a uniform draw
    r in [g, g + 1) lands in g's range. One searchsorted for all queries: no Python loop.
    """
    r = query_groups + rng.random(len(query_groups))
    idx = np.searchsorted(flat_cdf, r, side="right")
    return np.minimum(idx, len(flat_cdf) - 1)


def _gumbel_topk(rng: np.random.Generator, log_w: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices drawn without replacement in proportion to exp(log_w) per row."""
    keys = log_w + rng.gumbel(size=log_w.shape)
    return np.argsort(-keys, axis=1, kind="stable")[:, :k]


def _year_start_ts(years: np.ndarray) -> np.ndarray:
    """Unix time of Jan 1 of each year."""
    return (years - 1970).astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)


def _simulate(n_users: int, n_movies: int, seed: int, ratings_per_user: float,
              tag_applications: int | None) -> _World:
    if n_users < 1 or n_movies < 2:
        raise ValueError("need n_users >= 1 and n_movies >= 2")
    if not ratings_per_user > 0:
        raise ValueError("ratings_per_user must be positive")
    if tag_applications is not None and tag_applications < 0:
        raise ValueError("tag_applications must be >= 0")
    rng = np.random.default_rng(seed)
    mv = _make_movies(rng, n_movies)
    us = _make_users(rng, n_users, mv, ratings_per_user)
    u, m = _pick_rated(rng, us, mv)
    rating, ts = _rate(rng, u, m, us, mv)
    n_tags = round(0.045 * len(u)) if tag_applications is None else tag_applications
    tags, tag_theme, tag_long_tail = _make_tags(rng, n_tags, u, m, ts, us, mv)

    ids = mv["ids"]
    movies = pl.DataFrame({"movieId": ids, "title": mv["titles"], "genres": mv["genre_str"]})
    ratings = pl.DataFrame({"userId": (u + 1).astype(np.int64), "movieId": ids[m],
                            "rating": rating, "timestamp": ts})
    return _World(movies=movies, ratings=ratings, tags=tags, movie_ids=ids,
                  movie_themes=mv["th"], movie_theme_w=mv["th_w"],
                  user_theme_pref=us["p"], user_genre_pref=us["gp"], tag_theme=tag_theme,
                  tag_long_tail=tag_long_tail)


def _make_movies(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    k, g = len(THEMES), len(GENRES)
    # Theme mix: 1-3 themes per movie, drawn by global theme prevalence, Gamma(2) weights.
    prevalence = rng.dirichlet(np.full(k, 3.0))  # (K,)
    n_th = rng.choice([1, 2, 3], size=n, p=[0.45, 0.4, 0.15])
    th = _gumbel_topk(rng, np.broadcast_to(np.log(prevalence), (n, k)), 3)  # (M, 3)
    th_w = rng.gamma(2.0, size=(n, 3)) * (np.arange(3) < n_th[:, None])
    th_w = -np.sort(-th_w / th_w.sum(axis=1, keepdims=True), axis=1)  # slot 0 = main theme
    th = np.where(th_w > 0, th, th[:, :1])  # unused slots point at the main theme, weight 0

    # Genres: 1-3, drawn mostly from the themes' associated genres; 0.5% have none.
    assoc = np.zeros((k, g))  # (K, G) theme -> genre association
    for i, (genres, _) in enumerate(THEMES.values()):
        assoc[i, [GENRES.index(x) for x in genres]] = 1.0 / np.arange(1, len(genres) + 1)
    gw = np.einsum("mj,mjg->mg", th_w, assoc[th]) + 0.015  # (M, G)
    n_g = rng.choice([1, 2, 3], size=n, p=[0.35, 0.4, 0.25])
    n_g[rng.random(n) < 0.005] = 0
    gi = _gumbel_topk(rng, np.log(gw), 3)  # (M, 3)
    g_mask = np.arange(3) < n_g[:, None]  # (M, 3)
    genre_str = []
    for row, cnt in zip(gi.tolist(), n_g.tolist(), strict=True):  # cheap: M short joins
        genre_str.append("|".join(sorted(GENRES[j] for j in row[:cnt])) or NO_GENRES)

    # Year 1930-2023, skewed recent; released on a random day of that year.
    years = np.minimum(1930 + (94 * rng.beta(3.0, 1.3, size=n)).astype(np.int64), 2023)
    release = _year_start_ts(years) + rng.integers(0, 364 * DAY, size=n)
    quality = rng.normal(0.0, 0.45, size=n)
    # Zipf popularity over a rank that favours good and recent movies; 4% are never rated.
    order = np.argsort(-(0.8 * quality / 0.45 + 0.4 * (years - 1990) / 25
                         + rng.normal(size=n)), kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    pop = rank.astype(np.float64) ** -0.65 * np.exp(rng.normal(0.0, 0.8, size=n))
    cold = rng.random(n) < 0.04
    cold[order[0]] = False  # keep at least one rateable movie
    pop[cold] = 0.0

    # Sparse increasing movieIds (gaps like MovieLens, with a few big jumps).
    gaps = rng.geometric(0.55, size=n) + (rng.random(n) < 0.002) * rng.integers(100, 3000, n)
    ids = np.cumsum(gaps).astype(np.int64)

    return {"ids": ids, "th": th, "th_w": th_w, "gi": gi, "g_mask": g_mask,
            "n_g": n_g, "genre_str": genre_str, "years": years, "release": release,
            "quality": quality, "pop": pop, "cold": cold, "prevalence": prevalence,
            "titles": _titles(rng, years)}


def _titles(rng: np.random.Generator, years: np.ndarray) -> list[str]:
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
        adj, noun, noun2, name = _ADJ[a[i]], _NOUN[b[i]], _NOUN[c[i]], _NAME[nm[i]]
        if p == 0:
            t = f"{adj} {noun}"
        elif p == 1:
            t = f"{adj} {noun}, The"
        elif p == 2:
            t = f"{noun} of the {noun2}"
        elif p == 3:
            t = f"{noun} of the {noun2}, The"
        elif p == 4:
            t = f"{name}'s {noun}"
        elif p == 5:
            t = f"{noun} in {_PLACE[pl_[i]]}, A"
        elif p == 6:
            t = f"{adj} {noun} in {_PLACE[pl_[i]]}"
        elif p == 7:
            t = f"{name} and the {adj} {noun}"
        elif p == 8:
            t = f"{adj} {noun} ({_ALT[alt[i]]})"
        else:
            t = f'{name} "{_NICK[nick[i]]}" {_SURNAME[sur[i]]}'
        if seq[i] >= 0:
            t += _SEQUEL[seq[i]]
        out.append(f"{t} ({years[i]})")
    return out


def _make_users(rng: np.random.Generator, n: int, mv: dict[str, np.ndarray],
                ratings_per_user: float) -> dict[str, np.ndarray]:
    k, g = len(THEMES), len(GENRES)
    p = rng.normal(size=(n, k))  # (U, K) theme taste, used for choosing and rating
    gp = rng.normal(size=(n, g))  # (U, G) genre taste, used for rating
    bias = rng.normal(0.0, 0.35, size=n)
    mainstream = rng.beta(2.0, 5.0, size=n)  # share of picks by plain popularity

    # Active window: start skewed recent, lognormal length (median ~4 months, heavy tail).
    start = DATA_START + ((DATA_END - DATA_START) * rng.beta(1.3, 1.0, size=n)).astype(np.int64)
    length = np.exp(rng.normal(np.log(120 * DAY), 1.6, size=n)).astype(np.int64) + 3600
    end = np.minimum(start + length, DATA_END)

    # Rateable movies: released before the window ends. Extend short windows so that every
    # user can reach the minimum; cap each user at half of what is available.
    warm_release = np.sort(mv["release"][~mv["cold"]])
    min_r = int(min(20, max(1, ratings_per_user // 2)))
    need_avail = min(2 * min_r, len(warm_release)) - 1
    end = np.maximum(end, np.minimum(warm_release[need_avail] + DAY, DATA_END))
    avail = np.searchsorted(warm_release, end, side="right")
    cap = np.maximum(1, avail // 2)

    # Activity: min_r + heavy-tailed lognormal extra with the requested mean.
    extra = np.exp(rng.normal(-0.5 * 1.1**2, 1.1, size=n)) * (ratings_per_user - min_r)
    n_target = np.minimum(min_r + np.round(extra).astype(np.int64), cap)

    # Mixture over K theme components + 1 popularity component: (U, K+1) probabilities.
    tau = np.exp(1.5 * p) * np.sqrt(mv["prevalence"])
    tau /= tau.sum(axis=1, keepdims=True)
    mix = np.concatenate([tau * (1 - mainstream[:, None]), mainstream[:, None]], axis=1)
    return {"p": p, "gp": gp, "bias": bias, "start": start, "end": end, "avail": avail,
            "n_target": n_target, "mix": mix, "n_warm": len(warm_release)}


def _pick_rated(rng: np.random.Generator, us: dict[str, np.ndarray],
                mv: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, movie) pairs, n_target per user where possible, sorted by user, movie.

    Draw with replacement from each user's mixture (theme component k picks movie m with
    probability ~ theme weight x popularity), drop movies released after the user's window,
    dedupe, keep a random n_target per user; top up the users still short.
    """
    k = len(THEMES)
    n_users, n_movies = len(us["n_target"]), len(mv["pop"])
    # Component entries: (component, movie, weight); component K = plain popularity.
    comp = np.concatenate([mv["th"].ravel(), np.full(n_movies, k)])
    movie = np.concatenate([np.repeat(np.arange(n_movies), 3), np.arange(n_movies)])
    weight = np.concatenate([(mv["th_w"] * mv["pop"][:, None]).ravel(), mv["pop"]])
    keep = weight > 0
    comp, movie, weight = comp[keep], movie[keep], weight[keep]
    o = np.lexsort((movie, comp))
    comp, movie, weight = comp[o], movie[o], weight[o]
    mix = us["mix"].copy()
    present = np.isin(np.arange(k + 1), comp)
    mix[:, ~present] = 0.0  # a theme with no rateable movie: its mass goes to the rest
    mix /= mix.sum(axis=1, keepdims=True)
    # Re-index components to 0..C-1 so the flat CDF's groups are consecutive.
    remap = np.cumsum(present) - 1
    flat = _grouped_cdf(remap[comp], weight)
    mix = mix[:, present]
    n_comp = mix.shape[1]

    need = us["n_target"]
    accept = np.maximum(us["avail"] / us["n_warm"], 0.05)  # rough share released in time
    kept = np.empty(0, dtype=np.int64)  # keys user * M + movie
    for r in range(12):
        have = np.bincount(kept // n_movies, minlength=n_users)
        short = np.flatnonzero(have < need)
        if short.size == 0:
            break
        draws = np.ceil((need[short] - have[short]) * 1.3 * 1.6**r / accept[short]).astype(
            np.int64) + 2
        pv = mix[short]
        pv[:, -1] = np.maximum(0.0, 1.0 - pv[:, :-1].sum(axis=1))
        counts = rng.multinomial(draws, pv)  # (S, C) draws per user and component
        du = np.repeat(short, draws)  # user-major, matching counts' row order
        dc = np.repeat(np.tile(np.arange(n_comp), short.size), counts.ravel())
        dm = movie[_grouped_choice(rng, flat, dc)]
        ok = mv["release"][dm] <= us["end"][du]
        new = du[ok] * n_movies + dm[ok]
        # Existing pairs of the short users come first and are always kept.
        is_short = np.zeros(n_users, dtype=bool)
        is_short[short] = True
        old_mask = is_short[kept // n_movies]
        old = kept[old_mask]
        keys, first = np.unique(np.concatenate([old, new]), return_index=True)
        ku = keys // n_movies
        prio = ku + np.where(first < old.size, 0.0, 0.01 + 0.98 * rng.random(keys.size))
        order = np.argsort(prio, kind="stable")  # by user; old first, then random
        keys, ku = keys[order], ku[order]
        starts = np.cumsum(np.bincount(ku, minlength=n_users)) - np.bincount(ku,
                                                                             minlength=n_users)
        rank = np.arange(keys.size) - starts[ku]
        kept = np.concatenate([kept[~old_mask], keys[rank < need[ku]]])
    kept.sort()
    return kept // n_movies, kept % n_movies


def _rate(rng: np.random.Generator, u: np.ndarray, m: np.ndarray, us: dict[str, np.ndarray],
          mv: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ratings (0.5 steps) and timestamps for the pairs (u, m), all arrays of length N."""
    k, g = len(THEMES), len(GENRES)
    p_flat, gp_flat = us["p"].ravel(), us["gp"].ravel()
    aff_t = np.zeros(u.size)
    aff_g = np.zeros(u.size)
    for j in range(3):  # 3 theme slots and 3 genre slots per movie: gathers of length N
        aff_t += mv["th_w"][m, j] * p_flat[u * k + mv["th"][m, j]]
        aff_g += mv["g_mask"][m, j] * gp_flat[u * g + mv["gi"][m, j]]
    aff_g /= np.maximum(mv["n_g"][m], 1)
    score = (1.1 * aff_t + 0.45 * aff_g + mv["quality"][m] + us["bias"][u]
             + rng.normal(0.0, 0.6, size=u.size))
    # Monotone map score -> rating: thresholds at the quantiles giving RATING_SHARES (taken
    # on a strided subsample: fast at 25M and deterministic).
    sub = score[:: max(1, score.size // 2_000_000)]
    thresholds = np.quantile(sub, np.cumsum(RATING_SHARES)[:-1]) if sub.size else np.zeros(9)
    rating = (np.searchsorted(thresholds, score) + 1) * 0.5

    # Timestamp: uniform over the part of the user's window after the movie's release.
    lo = np.maximum(us["start"][u], mv["release"][m])
    hi = us["end"][u]
    ts = lo + (rng.random(u.size) * (hi - lo + 1)).astype(np.int64)
    return rating, np.minimum(ts, hi)


def _make_tags(rng: np.random.Generator, n_tags: int, u: np.ndarray, m: np.ndarray,
               ts: np.ndarray, us: dict[str, np.ndarray],
               mv: dict[str, np.ndarray]) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Tag applications by ~12% of users, on movies they rated (3% on never-rated movies).

    Returns the table plus each row's theme (-1: none) and whether it is a long-tail tag.
    """
    k = len(THEMES)
    n_users = len(us["n_target"])
    schema = {"userId": pl.Int64, "movieId": pl.Int64, "tag": pl.String, "timestamp": pl.Int64}
    n_rated = np.bincount(u, minlength=n_users)
    if n_tags == 0 or u.size == 0:
        return pl.DataFrame(schema=schema), np.zeros(0, np.int64), np.zeros(0, bool)
    row_start = np.cumsum(n_rated) - n_rated  # ratings are sorted by user

    # Taggers: a minority, more likely among active users; Pareto tag counts + power taggers.
    raters = np.flatnonzero(n_rated > 0)
    n_taggers = min(raters.size, max(1, round(0.12 * n_users)))
    w_act = np.sqrt(n_rated[raters].astype(np.float64))
    taggers = np.sort(rng.choice(raters, n_taggers, replace=False, p=w_act / w_act.sum()))
    w = rng.pareto(1.3, n_taggers) + 1.0
    w[rng.random(n_taggers) < 0.03] *= 10.0
    # Share out ~1.15 x n_tags (repeats are dropped below) in proportion to w, at most 4 per
    # rated movie: water-filling, a few vectorised passes.
    cap = 4.0 * n_rated[taggers]
    total = 1.15 * n_tags + 5
    fixed = np.zeros(n_taggers, dtype=bool)
    for _ in range(50):
        free_w = np.where(fixed, 0.0, w)
        alloc = np.where(fixed, cap, max(total - cap[fixed].sum(), 0.0) * free_w / max(
            free_w.sum(), 1e-300))
        over = ~fixed & (alloc > cap)
        if not over.any():
            break
        fixed |= over
    cnt = np.floor(alloc).astype(np.int64)
    cnt += rng.random(n_taggers) < alloc - cnt  # stochastic rounding
    cnt = np.minimum(cnt, cap.astype(np.int64))

    # Episodes: a tagger tags a distinct rated movie with ~2.2 tags at a time. Pick n_ep of
    # the tagger's rating rows without replacement, favouring popular movies (weight
    # pop^TAG_POPULARITY, so well-known films gather most tags): sort them by (tagger,
    # exponential race key Exp(1) / weight).
    n_ep = np.minimum(np.ceil(cnt / 2.2).astype(np.int64), n_rated[taggers])
    tr = np.repeat(np.arange(n_taggers), n_rated[taggers])  # (R_t,) tagger of each row
    tr_first = np.cumsum(n_rated[taggers]) - n_rated[taggers]
    rows = row_start[taggers][tr] + np.arange(tr.size) - tr_first[tr]
    race = rng.exponential(size=tr.size) / mv["pop"][m[rows]] ** TAG_POPULARITY
    order = np.lexsort((race, tr))
    tr, rows = tr[order], rows[order]
    pick = np.arange(tr.size) - tr_first[tr] < n_ep[tr]
    ep_row, ep_user = rows[pick], taggers[tr[pick]]
    ep_movie = m[ep_row]
    # Tagged soon after rating: minutes mostly, sometimes days.
    delay = np.where(rng.random(ep_user.size) < 0.8, rng.exponential(300.0, ep_user.size),
                     rng.exponential(3.0 * DAY, ep_user.size))
    ep_ts = ts[ep_row] + delay.astype(np.int64)
    cold = np.flatnonzero(mv["cold"])
    is_cold = (rng.random(ep_user.size) < 0.03) & (cold.size > 0)
    if is_cold.any():  # tags on never-rated movies, at a time in the window after release
        cm = cold[rng.integers(0, cold.size, int(is_cold.sum()))]
        cu = ep_user[is_cold]
        lo = np.maximum(us["start"][cu], mv["release"][cm])
        hi = np.maximum(us["end"][cu], lo)
        ep_movie[is_cold] = cm
        ep_ts[is_cold] = lo + (rng.random(cm.size) * (hi - lo + 1)).astype(np.int64)

    # Rows: each picks one of its tagger's episodes, then a theme of the movie (88%, by the
    # movie's theme weights) or the noise group, then a tag string of that group.
    ep_first = np.cumsum(n_ep) - n_ep
    ti = np.repeat(np.arange(n_taggers), cnt)
    ep = ep_first[ti] + (rng.random(ti.size) * n_ep[ti]).astype(np.int64)
    rm = ep_movie[ep]
    slot = (rng.random(ti.size)[:, None] >= np.cumsum(mv["th_w"][rm], axis=1)[:, :2]).sum(1)
    group = np.where(rng.random(ti.size) < 0.88, mv["th"][rm, slot], k)
    strings, v_group, v_weight = _vocabulary()
    tag = _grouped_choice(rng, _grouped_cdf(v_group, v_weight), group)
    theme = np.where(group < k, group, -1)

    # Long-tail rows: facet j of the row's movie, then that facet's fixed tag (see above).
    is_lt = rng.random(ti.size) < LONG_TAIL_SHARE
    salt = np.uint64(rng.integers(0, 2**62))
    lt_m = rm[is_lt]
    facet = _power_law_rank(rng.random(lt_m.size), FACET_EXPONENT, FACET_SPACE)
    facet_key = (lt_m.astype(np.uint64) * np.uint64(FACET_SPACE) + facet.astype(np.uint64)) ^ salt
    lt_code, theme[is_lt] = _facet_codes(facet_key, mv["th"][lt_m], mv["th_w"][lt_m])
    # Spelling variants: as generated (85%), other case (12%), stray whitespace (3%).
    variant = rng.choice(3, size=lt_code.size, p=[0.85, 0.12, 0.03])
    uniq, inv = np.unique(lt_code * 3 + variant, return_inverse=True)
    tag[is_lt] = len(strings) + inv
    vocab = pl.concat([pl.Series("tag", strings, dtype=pl.String),
                       _spelling_variants(uniq // 3, uniq % 3)])
    row_ts = np.minimum(ep_ts[ep] + rng.integers(0, 90, ti.size), DATA_END)
    ru = taggers[ti]

    # Exact repeats (same user, movie, tag string) are kept only rarely, as in real data.
    key = (ru * len(mv["pop"]) + rm) * vocab.len() + tag
    _, first = np.unique(key, return_index=True)
    keep = rng.random(key.size) < 0.02
    keep[first] = True
    sel = np.flatnonzero(keep)
    if sel.size > n_tags:
        sel = np.sort(rng.choice(sel, n_tags, replace=False))
    ru, rm, tag, row_ts = ru[sel], rm[sel], tag[sel], row_ts[sel]
    order = np.lexsort((row_ts, rm, ru))  # MovieLens order: user, then movie
    table = pl.DataFrame({
        "userId": ru[order] + 1,
        "movieId": mv["ids"][rm[order]],
        "tag": vocab.gather(tag[order]),
        "timestamp": row_ts[order],
    }, schema=schema)
    return table, theme[sel][order], is_lt[sel][order]


def _spelling_variants(codes: np.ndarray, variant: np.ndarray) -> pl.Series:
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
