"""documents/: the document grammar that ingest and the queries share, and its twins."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from helpers import rated_user_features
from hypothesis import given, settings
from hypothesis import strategies as st

from tagrec_cli import documents
from tagrec_cli.config import IngestConfig
from tagrec_cli.documents import frames
from tagrec_cli.documents.terms import MovieTerms, carried_share, tags_query_document
from tagrec_cli.ingest import run_ingest
from tagrec_cli.store.catalogue import CATALOGUE_COLUMNS, Catalogue, write_catalogue

TAGGY = st.text(alphabet=st.sampled_from(list("aZé  \t|,(x)É日")), max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(TAGGY, max_size=8))
def test_python_and_polars_tag_cleaning_agree(tags):
    frame = pl.DataFrame({"tag": tags}, schema={"tag": pl.String})
    cleaned = frames.clean_tag_column(frame)["tag"].to_list()
    # the polars rule keeps repeats (they are counted); without them the two are one rule
    assert list(dict.fromkeys(cleaned)) == documents.clean_tags(tags)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.just(documents.NO_GENRES), TAGGY))
def test_python_and_polars_genre_parsing_agree(genres):
    frame = pl.DataFrame({"genres": [genres]}, schema={"genres": pl.String})
    parsed = frame.select(g=frames.genre_list(pl.col("genres")))["g"][0].to_list()
    assert parsed == documents.genre_terms(genres)


def write_csvs(folder: Path, ratings: list[tuple], tags: list[tuple], movies: list[tuple]):
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n"
                                        + "".join(f"{u},{m},{r},{t}\n" for u, m, r, t in ratings))
    (folder / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n" + "".join(f"{u},{m},{g},{t}\n" for u, m, g, t in tags))
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n" + "".join(f'{m},"{t}",{g}\n' for m, t, g in movies))


def test_tags_query_document_equals_ingests_user_document(tmp_path):
    # User 1 gave "pixar" on two movies and "comedy" (a genre's name) on one, and liked
    # exactly the movies that carry either: 1, 2 (pixar) and 3 (genre Comedy). So a tags
    # query "pixar, comedy" describes user 1, and its document must be user 1's, word for
    # word. Ties among the liked movies' tags need the applications to break them: "funny"
    # and "zany" are each on one liked movie, but funny was applied by 3 users, zany by 1;
    # "zany" is also on movie 4, which makes it the more common by movies - the old query
    # rule (ties by movies) put it first, ingest puts "funny" first.
    movies = [(1, "Alpha (2001)", "Animation"), (2, "Beta (2002)", "Animation|Drama"),
              (3, "Gamma (2003)", "Comedy"), (4, "Delta (2004)", "Drama"),
              (5, "Eps (2005)", "Horror")]
    ratings = [(1, 1, 5.0, 10), (1, 2, 4.0, 11), (1, 3, 3.0, 12),
               (2, 1, 4.0, 10), (2, 4, 2.0, 11), (3, 3, 5.0, 10), (4, 4, 4.0, 10),
               (4, 5, 1.0, 11)]
    tags = [(1, 1, "pixar", 5), (1, 2, "pixar", 6), (1, 3, "comedy", 7),
            (2, 1, "funny", 5), (3, 1, "funny", 5), (4, 1, "funny", 5),
            (2, 2, "zany", 5), (4, 4, "zany", 5), (3, 3, "heist", 5), (2, 5, "gore", 5)]
    write_csvs(tmp_path / "data", ratings, tags, movies)
    cfg = IngestConfig(holdout_fraction=0.0)
    run_ingest(tmp_path / "data", tmp_path / "ws", cfg)
    users = pl.read_parquet(tmp_path / "ws" / "ingest" / "users.parquet")
    expected = list(users.filter(pl.col("userId") == 1)["tags"][0])
    # what `embed` copies into the catalogue that a tags query reads
    m = pl.read_parquet(tmp_path / "ws" / "ingest" / "movies.parquet").sort("movieId")
    write_catalogue(tmp_path / "catalogue", {c: m[c].to_list() for c in CATALOGUE_COLUMNS})
    catalogue = Catalogue.read(tmp_path / "catalogue", with_genres=True)
    got = tags_query_document(["pixar", "comedy"], catalogue.terms, cfg)
    assert got == expected
    # genres first (animation on 2 liked movies, then comedy and drama on 1), then the own
    # tags in order, then the liked movies' tags by movies, ties by applications
    assert expected == ["animation", "comedy", "drama", "pixar", "funny", "zany", "heist"]


def polars_tags_query_document(tags: list[str], movies: MovieTerms,
                               cfg: IngestConfig) -> list[str]:
    """The query document by ingest's own polars grammar (frames.user_document_tags) on a
    one-user frame: the reference the numpy version must equal."""
    rows = range(len(movies))
    applications = pl.DataFrame(
        {"movieId": [r for r in rows for _ in movies.tags(r)],
         "tag": [t for r in rows for t in movies.tags(r)],
         "applications": [c for r in rows for c in movies.counts(r)]},
        schema={"movieId": pl.Int64, "tag": pl.String, "applications": pl.Int64})
    genres = pl.DataFrame({"movieId": list(rows),
                           "genres": ["|".join(movies.genres(r)) or None for r in rows]},
                          schema={"movieId": pl.Int64, "genres": pl.String})
    wanted = documents.clean_tags(tags)
    by_tag = applications.filter(pl.col("tag").is_in(wanted)).select("movieId")
    by_genre = (genres.with_columns(g=frames.genre_list(pl.col("genres")))
                .filter(pl.col("g").list.eval(pl.element().is_in(wanted)).list.any())
                .select("movieId") if cfg.with_genres else by_tag.clear())
    liked = (pl.concat([by_tag, by_genre]).unique().sort("movieId")
             .select(pl.lit(0, pl.Int64).alias("userId"), pl.col("movieId").cast(pl.Int64)))
    own = pl.DataFrame({"userId": [0] * len(wanted), "tag": wanted,
                        "pos": list(range(len(wanted)))},
                       schema={"userId": pl.Int64, "tag": pl.String, "pos": pl.Int64})
    order = (applications.group_by("tag").agg(applications=pl.col("applications").sum())
             .sort(["applications", "tag"], descending=[True, False]))
    doc = frames.user_document_tags(liked, own, applications.select("movieId", "tag"), order,
                                    genres, cfg)
    return list(doc["tags"][0]) if doc.height else []


WORDS = st.sampled_from(["pixar", "funny", "zany", "heist", "drama", "comedy", "gritty", "été"])
GENRES = st.sampled_from(["Animation", "Drama", "Comedy", "Animation|Comedy", None,
                          documents.NO_GENRES])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(st.tuples(WORDS, st.integers(1, 4)), max_size=4,
                                   unique_by=lambda x: x[0]), GENRES),
                min_size=1, max_size=7),
       st.lists(WORDS, min_size=1, max_size=3), st.integers(1, 8), st.integers(0, 4),
       st.integers(0, 3), st.booleans())
def test_numpy_and_polars_tags_query_documents_agree(movies, query, max_tags, top, n_genres,
                                                     with_genres):
    terms = MovieTerms.from_lists([[t for t, _ in tags] for tags, _ in movies],
                                  [[c for _, c in tags] for tags, _ in movies],
                                  [g for _, g in movies])
    cfg = IngestConfig(max_tags=max_tags, top_user_tags=top, user_genres=n_genres,
                       with_genres=with_genres)
    assert tags_query_document(query, terms, cfg) == polars_tags_query_document(query, terms,
                                                                                cfg)


def test_rated_user_document_and_features_are_ingests(small_data, tmp_path):
    """A user known only by ratings gets, from documents.rated_user_document and
    rated_user_features, exactly what ingest wrote for every user who applied no
    tag of their own (the new-users slice and `recommend --ratings` rely on it)."""
    import json

    import numpy as np

    from tagrec_cli import features

    cfg = IngestConfig()
    run_ingest(small_data, tmp_path, cfg)
    folder = tmp_path / "ingest"
    users = pl.read_parquet(folder / "users.parquet")
    movies = pl.read_parquet(folder / "movies.parquet")
    ratings = pl.read_parquet(folder / "ratings.parquet")
    stats = json.loads((folder / "manifest.json").read_text())["feature_stats"]
    taggers = set(pl.read_csv(small_data / "tags.csv")["userId"].to_list())
    movie_tags = (movies.select("movieId", "tags", "tag_counts").explode(["tags", "tag_counts"])
                  .drop_nulls().select("movieId", tag="tags", applications="tag_counts"))
    checked = 0
    for row in users.filter(~pl.col("userId").is_in(list(taggers))).head(15).iter_rows(
            named=True):
        mine = ratings.filter(pl.col("userId") == row["userId"])
        assert frames.rated_user_document(mine, movie_tags, movies.select("movieId", "genres"),
                                     cfg) == row["tags"]
        expected = features.table_features("user", pl.DataFrame([row]), stats)[0]
        got = rated_user_features(mine["rating"].to_numpy(), mine["timestamp"].to_numpy(),
                                  cfg.like_threshold, stats)
        assert np.allclose(got, expected, atol=1e-6)
        checked += 1
    assert checked == 15
    # All at once (store.ingested.rated_users, which evaluate's new users and training's
    # short-history users use): the same documents and features, in the order asked.
    from tagrec_cli.documents import SEPARATOR
    from tagrec_cli.store.ingested import rated_users

    picked = users.filter(~pl.col("userId").is_in(list(taggers))).head(15)
    ids = picked["userId"].to_numpy()[::-1]
    docs, feats = rated_users(tmp_path, ratings.filter(pl.col("userId").is_in(ids.tolist())),
                              ids, stats)
    by_id = {r["userId"]: r for r in picked.iter_rows(named=True)}
    assert docs == [SEPARATOR.join(by_id[int(u)]["tags"]) for u in ids]
    expected = features.table_features("user", pl.DataFrame([by_id[int(u)] for u in ids]), stats)
    assert np.allclose(feats, expected, atol=1e-6)


def test_rated_user_document_by_hand():
    from tagrec_cli.config import IngestConfig

    # A (pixar 3, funny 1; Animation) rated 5, B (gritty 2; Drama) rated 1: only A is liked;
    # its tags by applications: pixar then funny; the liked genre comes first.
    ratings = pl.DataFrame({"movieId": [1, 2], "rating": [5.0, 1.0], "timestamp": [1, 2]})
    tags = pl.DataFrame({"movieId": [1, 1, 2], "tag": ["pixar", "funny", "gritty"],
                         "applications": [3, 1, 2]})
    movies = pl.DataFrame({"movieId": [1, 2], "genres": ["Animation", "Drama"]})
    assert frames.rated_user_document(ratings, tags, movies, IngestConfig()) == [
        "animation", "pixar", "funny"]
    assert frames.rated_user_document(ratings.filter(pl.col("rating") < 2), tags, movies,
                                 IngestConfig()) == []


def test_carried_share_counts_each_asked_term_once_per_movie():
    movies = [["pixar", "funny"], ["gritty"], ["funny", "comedy"], ["pixar", "heist"]]
    genres = ["Animation", "Drama", "Comedy", "Animation|Comedy"]
    terms = MovieTerms.from_lists(movies, None, genres)
    share = carried_share(["pixar", "comedy"], terms, with_genres=True)
    assert share.dtype == "float32"
    # C carries comedy as a tag and as a genre: one term of the two, not two
    assert share.tolist() == [0.5, 0.0, 0.5, 1.0]
    # without genres in the documents only tags count
    assert carried_share(["pixar", "comedy"], terms, with_genres=False).tolist() == [
        0.5, 0.0, 0.5, 0.5]
    # a term no movie carries (a typo) is left out of the share
    assert carried_share(["pixar", "nowhere"], terms, True).tolist() == [1.0, 0, 0, 1.0]
    assert carried_share(["pixar", "comedy", "nowhere"], terms, True).tolist() == [
        0.5, 0.0, 0.5, 1.0]
    assert carried_share(["nowhere"], terms, True).tolist() == [0, 0, 0, 0]
    # without genres in the documents a genre is carried by none, as a typo is
    assert carried_share(["pixar", "animation"], terms, False).tolist() == [1.0, 0, 0, 1.0]
    assert carried_share([], terms, True).tolist() == [0, 0, 0, 0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["heist", "noir", "drama", "comedy", "x", "y"]),
                         max_size=4), min_size=1, max_size=12),
       st.lists(st.sampled_from(["Comedy", "Drama", "Comedy|Drama", "(no genres listed)"]),
                min_size=12, max_size=12),
       st.booleans())
def test_term_cosine_is_sklearns_binary_tfidf_cosine(movies, genres, with_genres):
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    terms = MovieTerms.from_lists([documents.clean_tags(m) for m in movies], None,
                                  genres[:len(movies)])
    docs = [terms.document_terms(r, with_genres) for r in range(len(movies))]
    if not any(docs):
        return  # sklearn refuses an empty vocabulary
    x = TfidfVectorizer(analyzer=lambda t: t, binary=True).fit_transform(docs)
    expected = (x @ x.T).toarray()
    got = np.stack([terms.term_cosine(r, with_genres) for r in range(len(movies))])
    assert np.allclose(got, expected, atol=1e-6)


def test_term_ids_recorded_while_decoding_match_the_bisect():
    movies = [["pixar", "funny"], ["heist", "noir", "funny"], []]
    terms = MovieTerms.from_lists(movies, None, ["Animation|Comedy", "Crime", None])
    fresh = MovieTerms.from_lists(movies, None, ["Animation|Comedy", "Crime", None])
    decoded = [t for r in range(3) for t in terms.document_terms(r, with_genres=True)]
    assert set(terms.found) == set(decoded)  # recorded, so term_id skips the bisect
    for t in [*decoded, "zany", "a", "~"]:
        expected = fresh.term_id(t)  # by bisect: nothing decoded in `fresh`
        assert terms.term_id(t) == expected
        assert expected == (fresh.terms.index(t) if t in fresh.terms else -1)


def test_a_users_document_counts_every_tag_of_a_liked_movie_not_only_its_documents(
        small_data, tmp_path):
    """A movie's document keeps its max_tags most frequent tags, but a user's document
    counts every tag of the movies they liked (ingest's rule). `recommend --ratings`, the
    new-users slice and a tags query read the catalogue, so it must hold them all: with
    only the document's tags, ml-latest-small's user 42 got another document than ingest
    wrote (Pulp Fiction carries 173 tags). Here movies carry more than max_tags."""
    import numpy as np

    from tagrec_cli.documents.terms import user_document

    cfg = IngestConfig(max_tags=8, top_user_tags=6, user_genres=1)
    run_ingest(small_data, tmp_path, cfg)
    folder = tmp_path / "ingest"
    movies = pl.read_parquet(folder / "movies.parquet").sort("movieId")
    assert movies["tags"].list.len().max() > cfg.max_tags  # the case in question
    # the document text holds the first max_tags of them, most frequent first
    row = movies.filter(pl.col("tags").list.len() > cfg.max_tags).row(0, named=True)
    assert row["document"].endswith(", ".join(row["tags"][:cfg.max_tags]))
    assert row["tags"][cfg.max_tags] not in row["document"].split(", ")
    write_catalogue(tmp_path / "catalogue", {c: movies[c].to_list() for c in CATALOGUE_COLUMNS})
    catalogue = Catalogue.read(tmp_path / "catalogue", with_genres=True)
    users = pl.read_parquet(folder / "users.parquet")
    ratings = pl.read_parquet(folder / "ratings.parquet")
    taggers = set(pl.read_csv(small_data / "tags.csv")["userId"].to_list())
    checked = 0
    for user in users.filter(~pl.col("userId").is_in(list(taggers)))["userId"].head(30):
        mine = ratings.filter(pl.col("userId") == user)
        liked = np.zeros(len(catalogue.ids), bool)
        liked[catalogue.rows(mine.filter(pl.col("rating") >= cfg.liked_rating)["movieId"]
                             .to_numpy())] = True
        expected = list(users.filter(pl.col("userId") == user)["tags"][0])
        assert user_document([], liked, catalogue.terms, cfg) == expected, user
        checked += 1
    assert checked == 30


def test_movie_terms_problem_finds_arrays_that_are_no_whole_table():
    from tagrec_cli.documents.terms import MovieTerms

    good = MovieTerms.from_lists([["heist", "twist"], []], [[3, 1], []], ["Crime", None])
    assert good.problem() is None
    for field, value, why in [
            ("tag_ids", good.tag_ids[:-1], "tag_indptr does not end at 1 entries"),
            ("genre_indptr", good.genre_indptr[:-1],
             "tag_indptr and genre_indptr cover different movies"),
            ("tag_indptr", good.tag_indptr[::-1].copy(), "tag_indptr does not rise from 0"),
            ("genre_ids", good.genre_ids + 10, "genre_ids name terms that are not there"),
            ("tag_counts", good.tag_counts[:1], "tag_counts and tag_ids differ in length")]:
        arrays = {a: getattr(good, a) for a in MovieTerms.ARRAYS} | {field: value}
        assert MovieTerms(good.terms, *(arrays[a] for a in MovieTerms.ARRAYS)).problem() == why
