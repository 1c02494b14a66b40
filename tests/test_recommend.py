"""recommend --tags, similar, reasons and embed --add-movies, on a tiny trained workspace."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from helpers import invoke
from safetensors.numpy import load_file
from sklearn.feature_extraction.text import TfidfVectorizer

from tagrec_cli.config import SIMILAR_TERMS, TAG_MATCH, IngestConfig, ModelConfig
from tagrec_cli.documents import parse_tags
from tagrec_cli.documents.terms import MovieTerms
from tagrec_cli.documents.terms import tags_query_document as terms_query_document
from tagrec_cli.errors import TagrecError
from tagrec_cli.features import RAW_COLUMNS, user_features
from tagrec_cli.recommend import closest_history, shared_tags
from tagrec_cli.recommend import nearest as top_k
from tagrec_cli.store import Store
from tagrec_cli.store.catalogue import Catalogue
from tagrec_cli.store.embeddings import load_seen, load_table
from tagrec_cli.towers.encode import encode_rows
from tagrec_cli.towers.model import load_model
from tagrec_cli.towers.npbert import load_tower
from tagrec_cli.towers.tokens import TokenTable, tokenize


@pytest.fixture
def trained(embedded_sample_refit_300pairs_dim16: Path) -> Path:
    """conftest's embedded_sample_refit_300pairs_dim16: the bundled sample data, ingested
    refit (every tag kept), trained one epoch, embedded (read-only)."""
    return embedded_sample_refit_300pairs_dim16


@pytest.fixture
def ws(trained: Path, copy_workspace) -> Path:
    return copy_workspace(trained)


def user_side_features(workdir: Path, users: list[int | None], stats: dict) -> torch.Tensor:
    """Side features from ingest's users.parquet; None = a tags query (no history)."""
    df = pl.read_parquet(workdir / "ingest" / "users.parquet")
    raw = []
    for user in users:
        row = df.filter(pl.col("userId") == user).to_dicts() if user is not None else []
        raw.append([row[0][c] for c in RAW_COLUMNS["user"]] if row
                   else [0, float("nan"), 0, float("nan")])
    n, mean, dislikes, last = (np.array(col, dtype=np.float64) for col in zip(*raw, strict=True))
    return torch.from_numpy(user_features(n, mean, dislikes, last, stats))


def torch_user_vectors(workdir: Path, documents: list[str],
                       users: list[int | None] | None = None) -> np.ndarray:
    """The reference: the user tower through torch, as `embed` runs it."""
    model, tokenizer, _ = load_model(workdir / "model")
    offsets, tokens = tokenize(tokenizer, documents, model.cfg.max_length)
    table = TokenTable(np.arange(len(documents)), offsets, tokens, tokenizer.pad_token_id)
    extra = None
    if model.cfg.features is not None:
        extra = user_side_features(workdir, users or [None] * len(documents),
                                   model.cfg.features)
    vecs = encode_rows(model, table, np.arange(len(documents)), torch.device("cpu"),
                       side="user", features=extra)
    if model.cfg.collaborative and users:  # + the pool of their liked movies, as embed adds it
        from tagrec_cli.towers import collab

        ids = np.array([-1 if u is None else u for u in users or [None] * len(documents)])
        from tagrec_cli.artifacts import ingest_manifest

        threshold = ingest_manifest(workdir)["settings"]["like_threshold"]
        liked = collab.workspace_liked(workdir, ids, model.id_movies.numpy(), threshold)
        vecs = collab.with_collab(model, "user", ids, vecs, liked)
    return torch.nn.functional.normalize(vecs, dim=1).numpy()


def movies_per_term(catalogue: Catalogue) -> Counter:
    """term -> movies whose document carries it, counted in Python (the reference for the
    catalogue's vectorised count)."""
    return Counter(t for r in range(len(catalogue.ids)) for t in catalogue.document_terms(r))


def movie_with_tags(workdir: Path, at_least: int = 2) -> int:
    catalogue = Store(workdir).catalogue
    return int(next(m for r, m in enumerate(catalogue.ids)
                    if len(catalogue.document_terms(r)) >= at_least))


# ---------------------------------------------------------------- pure functions


@pytest.mark.parametrize("text, tags", [
    ("dark comedy, twist ending, heist", ["dark comedy", "twist ending", "heist"]),
    ('Heist, "rock, paper", HEIST', ["heist", "rock, paper"]),
    ("  ,  , ", []),
    ("", []),
    ("Amélie-like\nfilm noir\n\n", ["amélie-like", "film noir"]),
    ("日本, émigré ,  ", ["日本", "émigré"]),
    ("heist\rnoir\r\ndrama", ["heist", "noir", "drama"]),  # old Mac and Windows line ends
])
def test_parse_tags(text, tags):
    assert parse_tags(text) == tags


@pytest.mark.parametrize("text", ['"unclosed, quote', 'heist, "noir'])
def test_a_quote_left_open_is_an_error_not_one_long_tag(text):
    # the audit's: '"unclosed, quote' was read as the one tag "unclosed, quote"
    with pytest.raises(TagrecError, match=r"unexpected end of data \(is a double quote left"):
        parse_tags(text)


def test_shared_tags_rarest_first_at_most_three():
    counts = {"drama": 90, "heist": 4, "noir": 4, "paris": 1, "rain": 7}
    query = ["drama", "heist", "noir", "paris", "rain", "absent"]
    movie = ["rain", "noir", "drama", "heist", "paris"]
    assert shared_tags(query, movie, counts) == ["paris", "heist", "noir"]
    assert shared_tags(["drama"], ["heist"], counts) == []


def test_closest_history_never_returns_the_movie_itself():
    history = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    history_ids = np.array([10, 20, 30])
    recs = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    # movie 20 is recommended (--include-seen) and is its own nearest: the next one wins
    assert closest_history(history, history_ids, recs, np.array([20, 99])).tolist() == [30, 10]
    assert closest_history(history[:0], history_ids[:0], recs, np.array([1, 2])).tolist() == \
        [-1, -1]


def test_top_k_known_answer_and_exclusions():
    # items on the unit circle; the query points at item 1, item 2 is next (cos 0.6)
    items = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], np.float32)
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    rows, scores = top_k(queries, items, 2)
    assert [r.tolist() for r in rows] == [[1, 2], [0, 2]]
    assert scores[0].tolist() == pytest.approx([1.0, 0.6])
    # excluding the best moves the next ones up; k larger than what is left is capped
    rows, _ = top_k(queries, items, 5, exclude=[np.array([1]), np.array([0, 2])])
    assert [r.tolist() for r in rows] == [[2, 0], [1]]
    with pytest.raises(ValueError):
        top_k(queries, items, 0)


def test_top_k_adds_each_querys_boost():
    items = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], np.float32)
    queries = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    # query 0's boost lifts item 0 (cos 0) above item 2 (cos 0.6); query 1 has none
    boosts = [np.array([0.7, 0.0, 0.0], np.float32), None]
    rows, scores = top_k(queries, items, 3, boosts=boosts)
    assert [r.tolist() for r in rows] == [[1, 0, 2], [1, 2, 0]]
    assert scores[0].tolist() == pytest.approx([1.0, 0.7, 0.6])
    assert scores[1].tolist() == pytest.approx([1.0, 0.6, 0.0])


def test_top_k_checkerboard_batch_equals_single():
    # implicit's checkerboard: item i is nearest to query i; ties broken by the lower row
    n = 12
    eye = np.eye(n, dtype=np.float32)
    rows, _ = top_k(eye, eye, 1)
    assert [int(r[0]) for r in rows] == list(range(n))
    rng = np.random.default_rng(1)
    q = rng.normal(size=(7, 4)).astype(np.float32)
    items = np.round(rng.normal(size=(50, 4)), 1).astype(np.float32)
    items[10] = items[3]  # an exact tie
    excl = [rng.choice(50, size=5, replace=False) for _ in range(7)]
    batch_rows, batch_scores = top_k(q, items, 10, excl)
    for i in range(7):
        single_rows, single_scores = top_k(q[i:i + 1], items, 10, [excl[i]])
        assert batch_rows[i].tolist() == single_rows[0].tolist()
        assert np.array_equal(batch_scores[i], single_scores[0])
        assert not set(batch_rows[i].tolist()) & set(excl[i].tolist())
        assert np.all(np.diff(batch_scores[i]) <= 0)



def toy_catalogue() -> Catalogue:
    genres = ["Animation", "Drama", "Comedy", "Animation|Comedy"]
    tags = [["pixar", "funny"], ["gritty"], ["funny", "zany"], ["pixar", "zany", "heist"]]
    # as Catalogue.load reads a workspace whose documents carry genres: terms = tags + genres
    return Catalogue(np.arange(1, 5), ["A", "B", "C", "D"], [None] * 4, genres,
                     MovieTerms.from_lists(tags, None, genres), [None] * 4, with_genres=True)


def tags_query_document(tags: list[str], catalogue: Catalogue, max_tags: int, top_tags: int,
                        n_genres: int) -> list[str]:
    """The numpy query document on a catalogue, as recommend.tags_document calls it."""
    cfg = IngestConfig(max_tags=max_tags, top_user_tags=top_tags, user_genres=n_genres)
    return terms_query_document(tags, catalogue.terms, cfg)


def test_tags_query_document_by_hand():
    cat = toy_catalogue()
    # "pixar" is on A and D: genres animation x2, comedy x1; their tags pixar x2, then
    # funny, zany, heist x1 each, ordered by movies carrying them overall (funny 2, zany 2,
    # heist 1), then alphabetically: funny, zany, heist. The given tag stays first of the
    # tags; repeats are dropped.
    assert tags_query_document(["pixar"], cat, 128, 50, 5) == [
        "animation", "comedy", "pixar", "funny", "zany", "heist"]
    assert tags_query_document(["pixar"], cat, 128, 50, 0) == ["pixar", "funny", "zany",
                                                                "heist"]
    assert tags_query_document(["pixar"], cat, 3, 50, 5) == ["animation", "comedy", "pixar"]
    assert tags_query_document(["pixar"], cat, 128, 1, 1) == ["animation", "pixar"]
    # a genre matches movies too; a tag no movie carries leaves just itself
    assert tags_query_document(["drama"], cat, 128, 50, 5) == ["drama", "gritty"]
    assert tags_query_document(["nowhere"], cat, 128, 50, 5) == ["nowhere"]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_numpy_tower_matches_torch(tmp_path, tiny_bert, pooling):
    from tagrec_cli.towers.model import build_model, save_model

    model, tokenizer = build_model(ModelConfig(base_model=str(tiny_bert), dim=16,
                                               pooling=pooling), seed=3)
    (tmp_path / "model").mkdir()
    save_model(model, tokenizer, tmp_path / "model")
    docs = ["heist, twist ending", "日本, émigré, " + ", ".join(["long"] * 200), ""]
    ref = torch_user_vectors(tmp_path, docs)
    tower = load_tower(tmp_path / "model", "user")
    assert tower is not None
    for doc in docs:  # same tokens as transformers' tokenizer, truncated alike
        offsets, tokens = tokenize(tokenizer, [doc], 128)
        assert tower.token_ids(doc).tolist() == tokens.tolist()
    assert np.abs(tower.encode(docs) - ref).max() < 1e-5


def test_numpy_tower_declines_other_architectures(tmp_path, trained):
    folder = tmp_path / "model"
    shutil.copytree(trained / "model", folder)
    config = json.loads((folder / "config.json").read_text())
    config["encoder_config"]["position_embedding_type"] = "relative_key"
    (folder / "config.json").write_text(json.dumps(config))
    assert load_tower(folder, "user") is None


# ---------------------------------------------------------------- recommend --tags


def test_tags_query_ranks_by_the_torch_encoded_document(trained):
    r = invoke(["recommend", "--tags", 'Drama, "rock, paper", émigré', "--json", "-k", "7"],
               trained)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["query"] == "your tags"
    got = [x["movieId"] for x in result["recommendations"]]
    document = tags_query_document(["drama", "rock, paper", "émigré"],
                                   Store(trained).catalogue, 128, 50, 5)
    # the 5 genres of the movies carrying them (drama among them), then the given tags
    assert "drama" in document[:5] and document[5:7] == ["rock, paper", "émigré"]
    query = torch_user_vectors(trained, [", ".join(document)])[0]
    movies = load_table(trained, "movie")
    # the cosine + TAG_MATCH x the share of the asked terms the movie's document carries,
    # among those some movie carries (the other two are in no document here)
    catalogue = Store(trained).catalogue
    asked = {"drama", "rock, paper", "émigré"}
    documents_terms = [set(catalogue.document_terms(r)) for r in catalogue.rows(movies.ids)]
    known = {t for t in asked if any(t in d for d in documents_terms)}
    assert known == {"drama"}
    carried = [len(known & d) / len(known) for d in documents_terms]
    scores = movies.vectors @ query + TAG_MATCH * np.array(carried)
    assert np.allclose([x["score"] for x in result["recommendations"]],
                       np.sort(scores)[::-1][:7], atol=1e-4)
    assert set(got) <= set(movies.ids[np.argsort(-scores)[:9]].tolist())  # near-ties aside
    assert max(carried) > 0 and min(carried) == 0  # the match term moved something
    for row in result["recommendations"]:
        assert row["because"]["like"] is None  # no history for a tags-only query
        assert set(row["because"]["tags"]) <= {"drama", "rock, paper", "émigré"}
        # ingest put genres in the documents, so a genre is a reason like a tag
        assert ("drama" in row["because"]["tags"]) == ("Drama" in row["genres"].split("|"))


def test_emoji_codes_in_data_are_printed_as_text():
    from tagrec_cli.cli.app import err, out, shown

    for console in (out, err):  # tables and errors alike: a title ":fire:" is not 🔥
        with console.capture() as captured:
            console.print(shown("Back :fire: :smile: (2024)"))
        assert captured.get().strip() == "Back :fire: :smile: (2024)"


def test_markup_in_tags_is_printed_as_text(trained):
    r = invoke(["recommend", "--tags", "drama, [/], [bold]x[/bold]", "-k", "30"], trained)
    assert r.exit_code == 0, r.output  # rich would raise on "[/]" read as markup
    assert "top 30 for your tags" in r.stdout


def test_tags_file_and_table_output(tmp_path, trained):
    path = tmp_path / "tags.txt"
    path.write_text("film noir\nheist\n", encoding="utf-8")
    r = invoke(["recommend", "--tags-file", str(path), "-k", "3"], trained)
    assert r.exit_code == 0, r.output
    assert "top 3 for your tags" in r.stdout and "because" in r.stdout
    a = json.loads(invoke(["recommend", "--tags-file", str(path), "--json"], trained).stdout)
    b = json.loads(invoke(["recommend", "--tags", "film noir, heist", "--json"], trained).stdout)
    assert a == b


def test_catalogue_values_follow_the_movie_tables_rows(trained):
    from tagrec_cli.documents.terms import carried_share
    from tagrec_cli.recommend import tag_match

    store = Store(trained)
    n = len(store.table("movie").ids)
    # as if the table held the catalogue's movies in reverse order, the last one unknown
    order = np.r_[np.arange(n)[::-1][:-1], -1]
    store.__dict__["catalogue_rows"] = order  # (the cached_property's slot)
    values = np.arange(1, n + 1, dtype=np.float32)
    got = store.per_table_row(values)
    assert got.dtype == np.float32
    assert got.tolist() == [*values[order[:-1]].tolist(), 0.0]
    share = carried_share(["drama"], store.catalogue.terms, store.catalogue.with_genres)
    assert share.max() > 0
    assert tag_match(store, ["drama"]).tolist() == pytest.approx(
        [*(TAG_MATCH * share[order[:-1]]).tolist(), 0.0])


def test_user_with_tags_ranks_by_the_tags_without_the_users_movies(trained):
    # The tags choose (QUALITY.md, "A user steered by tags"): the list is the tags alone's,
    # scores and all, with the movies the user rated left out.
    alone = json.loads(invoke(["recommend", "--tags", "space opera", "--json", "-k", "200"],
                              trained).stdout)["recommendations"]
    index = load_seen(trained)
    top = {m["movieId"] for m in alone[:20]}
    user = next(u for u in range(1, 200) if top & set(index.of(u)[0]))  # one who rated some
    seen, _ = index.of(user)
    r = invoke(["recommend", "--user", str(user), "--tags", "space opera", "--json", "-k", "20"],
               trained)
    assert r.exit_code == 0, r.output
    with_tags = json.loads(r.stdout)["recommendations"]
    expected = [m for m in alone if m["movieId"] not in set(seen)][:20]
    assert [m["movieId"] for m in with_tags] == [m["movieId"] for m in expected]
    assert [m["score"] for m in with_tags] == pytest.approx([m["score"] for m in expected],
                                                            abs=1e-6)
    assert json.loads(r.stdout)["user"] == user


def test_reasons_are_shared_rare_tags_and_the_closest_liked_movie(trained):
    catalogue = Store(trained).catalogue
    counts = movies_per_term(catalogue)
    seen = load_seen(trained)
    movies = load_table(trained, "movie")
    manifest = json.loads((trained / "embeddings" / "manifest.json").read_text())
    liked_at = manifest["ingest_settings"]["liked_rating"]
    checked_tags = 0
    for user in (3, 7, 42, 77, 5, 11, 23):
        r = invoke(["recommend", "--user", str(user), "--json", "-k", "30"], trained)
        doc = set(Store(trained).user_tags(user))
        history, ratings = seen.of(user)
        liked = history[ratings >= liked_at]
        for row in json.loads(r.stdout)["recommendations"]:
            movie_tags = catalogue.document_terms(
                int(catalogue.rows(np.array([row["movieId"]]))[0]))
            common = sorted(doc & set(movie_tags), key=lambda t: (counts[t], t))
            assert row["because"]["tags"] == common[:3]
            checked_tags += bool(common)
            like = row["because"]["like"]["movieId"]
            assert like in liked
            rec = movies.vectors[movies.rows_of(np.array([row["movieId"]]))[0]]
            sims = movies.vectors[movies.rows_of(liked)] @ rec
            assert sims.max() == pytest.approx(float(rec @ movies.vectors[
                movies.rows_of(np.array([like]))[0]]), abs=1e-6)
    assert checked_tags > 0  # the check above saw real shared tags, not only empty lists


@pytest.mark.parametrize("args, message", [
    (["recommend", "--tags", " , "], "--tags holds no tag"),
    (["recommend", "--tags", ""], "--tags holds no tag"),
    (["recommend"], "give --user ID, --tags"),
    (["recommend", "--user", "999999", "--tags", "heist"], "unknown user 999999"),
    (["recommend", "--tags", "a", "--tags-file", "x.txt"], "not both"),
    (["similar"], "give --movie ID or --title"),
    (["similar", "--movie", "999999"], "unknown movie 999999"),
    (["similar", "--title", "qqqqzz"], "no movie title contains 'qqqqzz'"),
    (["similar", "--title", "[/] [bold]"], "no movie title contains '[/] [bold]'"),  # not markup
    (["similar", "--title", ":fire: zz"], "no movie title contains ':fire: zz'"),  # not 🔥
])
def test_bad_queries_are_one_line_errors(trained, args, message):
    r = invoke(args, trained)
    assert r.exit_code == 1
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["recommend", "--tags", "a", "-k", "0"],
                                  ["similar", "--movie", "1", "-k", "-3"]])
def test_a_k_below_one_is_a_bad_option(trained, args):
    # exit 2 with the option's range, as every other option out of range (README)
    r = invoke(args, trained)
    assert r.exit_code == 2 and "is not in the range x>=1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_tags_file_without_a_tag_names_the_file(trained, tmp_path):
    path = tmp_path / "tags.txt"
    path.write_text(" , \n\n", encoding="utf-8")
    r = invoke(["recommend", "--tags-file", str(path)], trained)
    assert r.exit_code == 1
    assert r.stderr.strip() == (f"Error: {path} holds no tag (write them separated by commas "
                                "or lines)")


@pytest.mark.parametrize("option", ["--ratings", "--tags-file"])
def test_a_query_file_that_never_ends_is_one_line(trained, option):
    r = invoke(["recommend", option, "/dev/zero"], trained)  # not a MemoryError
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.strip() == ("Error: /dev/zero is larger than 16 MiB: a query file holds "
                                "one person's ratings or tags")


def test_read_query_text_reads_up_to_its_limit(tmp_path):
    from tagrec_cli.datasets.user_ratings import read_query_text
    from tagrec_cli.errors import DataError

    path = tmp_path / "q.txt"
    path.write_bytes(b"\xef\xbb\xbfheist, noir")  # a BOM, then 11 bytes
    assert read_query_text(path, limit=14) == "heist, noir"
    with pytest.raises(DataError, match="larger than"):
        read_query_text(path, limit=13)


def test_tags_file_not_utf8(tmp_path, trained):
    path = tmp_path / "tags.txt"
    path.write_bytes(b"caf\xe9, noir")
    r = invoke(["recommend", "--tags-file", str(path)], trained)
    assert r.exit_code == 1 and "not UTF-8" in r.stderr


def test_old_embeddings_format_asks_for_embed_again(ws):
    path = ws / "embeddings" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "format_version": 1}))
    r = invoke(["recommend", "--user", "7"], ws)
    assert r.exit_code == 1 and "re-run `tagrec embed`" in r.stderr


# ---------------------------------------------------------------- similar


def test_similar_is_the_nearest_movies_without_the_movie_itself(trained):
    movie = movie_with_tags(trained)
    r = invoke(["similar", "--movie", str(movie), "--json", "-k", "5"], trained)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["query"]["movieId"] == movie
    movies = load_table(trained, "movie")
    row = movies.rows_of(np.array([movie]))[0]
    store = Store(trained)
    assert row not in store.unrated_rows  # a rated movie: its terms count too
    # the cosine + SIMILAR_TERMS x the binary TF-IDF cosine of the two documents, by sklearn
    catalogue = store.catalogue
    docs = [catalogue.document_terms(int(r)) for r in catalogue.rows(movies.ids)]
    tfidf = TfidfVectorizer(analyzer=lambda terms: terms, binary=True).fit_transform(docs)
    terms = (tfidf @ tfidf[row].T).toarray().ravel()
    others = np.delete(terms, row)
    assert others.max() > 0 and (others == 0).any()  # the term score moves something
    scores = movies.vectors @ movies.vectors[row] + SIMILAR_TERMS * terms
    scores[row] = -np.inf
    assert np.allclose([x["score"] for x in result["recommendations"]],
                       np.sort(scores)[::-1][:5], atol=1e-5)
    assert movie not in [x["movieId"] for x in result["recommendations"]]


def test_similar_by_title(trained):
    catalogue = Store(trained).catalogue
    # a title whose name (year left out) matches only itself
    title = next(t for t in catalogue.titles
                 if len(catalogue.find(t.rsplit(" (", 1)[0])) == 1 and len(t) > 12)
    name = title.rsplit(" (", 1)[0]
    r = invoke(["similar", "--title", name.upper(), "--json", "-k", "3"], trained)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["query"]["title"] == title
    # a common word matches many titles: the most rated is shown (issue 15: the README's
    # `--title "matrix"` must answer), the others are listed so the user can pick one
    r = invoke(["similar", "--title", "the", "--json"], trained)
    best, matches = catalogue.pick("the")
    assert r.exit_code == 0 and "pick one with --movie ID" in r.stderr
    assert json.loads(r.stdout)["query"]["movieId"] == best
    assert f"{next(m for m in matches if m != best)} " in r.stderr
    # a typo is answered with close titles
    r = invoke(["similar", "--title", name[:-1] + "#"], trained)
    assert r.exit_code == 1 and f"did you mean {title!r}" in r.stderr


# ---------------------------------------------------------------- embed --add-movies


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(["movieId,title,genres,tags", *rows]) + "\n", encoding="utf-8")
    return path


def test_added_movies_are_recommended_and_found_by_similar(tmp_path, ws):
    before = load_file(str(ws / "embeddings" / "movies.safetensors"))
    users_before = (ws / "embeddings" / "users.safetensors").read_bytes()
    csv = write_csv(tmp_path / "new.csv", [
        '900001,"Heist, The (2031)",Crime|Thriller,"safe cracking|Twist Ending|日本"',
        "900002,Heist Again (2032),Crime|Thriller,safe cracking|twist ending|日本",
    ])
    r = invoke(["embed", "--add-movies", str(csv)], ws)
    assert r.exit_code == 0, r.output
    assert "added 2 movies" in r.stdout
    after = load_file(str(ws / "embeddings" / "movies.safetensors"))
    assert len(after["ids"]) == len(before["ids"]) + 2
    assert np.array_equal(after["embeddings"][:-2], before["embeddings"])  # old rows kept
    assert (ws / "embeddings" / "users.safetensors").read_bytes() == users_before
    assert not list(ws.glob(".embeddings*"))  # no temporary folder left
    manifest = json.loads((ws / "embeddings" / "manifest.json").read_text())
    assert manifest["added_movies"] == 2 and manifest["movies"] == len(after["ids"])

    # a rated movie's similar list takes every movie, the added ones too
    store = Store(ws)
    table = store.table("movie")
    unrated_ids = set(table.ids[store.unrated_rows].tolist())
    assert {900001, 900002} <= unrated_ids and len(unrated_ids) < len(table.ids)
    rated = int(next(i for i in table.ids if int(i) not in unrated_ids))
    r = invoke(["similar", "--movie", str(rated), "--json", "-k", "100000"], ws)
    listed = [x["movieId"] for x in json.loads(r.stdout)["recommendations"]]
    assert len(listed) == len(table.ids) - 1  # every movie but itself
    assert {900001, 900002} <= set(listed)
    # a movie nobody rated is compared with the rated movies only (unrated.similar_exclude):
    # its cosine with the other unrated ones says "also unrated" more than "alike"
    r = invoke(["similar", "--movie", "900001", "--json", "-k", "100000"], ws)
    assert r.exit_code == 0, r.output
    listed = json.loads(r.stdout)["recommendations"]
    assert len(listed) == len(table.ids) - len(unrated_ids)
    assert not {x["movieId"] for x in listed} & unrated_ids
    rows = table.rows_of(np.array([x["movieId"] for x in listed]))
    cosine = table.vectors[rows] @ table.vectors[int(table.rows_of(np.array([900001]))[0])]
    assert [x["score"] for x in listed] == pytest.approx(cosine.tolist(), abs=1e-5)
    assert np.all(np.diff(cosine) <= 1e-6)  # best first
    counts = movies_per_term(store.catalogue)
    terms = ["safe cracking", "twist ending", "日本", "crime", "thriller"]  # genres count too

    def shared(movie: int) -> list[str]:  # what the reason should name, rarest first
        theirs = store.catalogue.document_terms(int(store.catalogue.rows(np.array([movie]))[0]))
        return [t for t in sorted(terms, key=lambda t: (counts[t], t)) if t in theirs][:3]

    assert all(x["because"]["tags"] == shared(x["movieId"]) for x in listed[:50])
    assert any(shared(x["movieId"]) for x in listed[:50])  # (not only empty lists)
    assert counts["safe cracking"] == 2
    r = invoke(["similar", "--title", "heist again", "--json", "-k", "1"], ws)
    assert json.loads(r.stdout)["recommendations"][0]["movieId"] not in unrated_ids
    # the new movies are ranked by recommend as well, with the score of their new vectors
    r = invoke(["recommend", "--tags", "safe cracking, twist ending, 日本", "--json",
                "-k", "100000"], ws)
    ranked = {x["movieId"]: x["score"] for x in json.loads(r.stdout)["recommendations"]}
    assert len(ranked) == len(after["ids"])
    document = tags_query_document(["safe cracking", "twist ending", "日本"],
                                   Store(ws).catalogue, 128, 50, 5)
    query = torch_user_vectors(ws, [", ".join(document)])[0]
    # + the tag match: it carries all three asked tags
    assert ranked[900001] == pytest.approx(float(after["embeddings"][-2] @ query) + TAG_MATCH,
                                           abs=1e-4)

    # the stored vector is the movie tower's encoding of the document ingest would build
    model, tokenizer, _ = load_model(ws / "model")
    doc = "crime, thriller, safe cracking, twist ending, 日本"  # ingest ran with_genres only
    offsets, tokens = tokenize(tokenizer, [doc], 128)
    # never rated: 0 ratings, mean and dislike share at the priors, its year, the flag
    stats = model.cfg.features
    side = torch.tensor([[0.0, 0.0, 3 * stats["dislike_share"], 3 * (2031 - 1990) / 20, 3.0]])
    vec = encode_rows(model, TokenTable(np.array([0]), offsets, tokens), np.array([0]),
                      torch.device("cpu"), side="movie", features=side)
    vec = torch.nn.functional.normalize(vec, dim=1).numpy()[0]
    assert np.abs(after["embeddings"][-2] - vec).max() < 1e-5


def test_add_existing_movie_needs_replace(tmp_path, ws):
    movie = movie_with_tags(ws)
    table = ws / "embeddings" / "movies.safetensors"
    before = table.read_bytes()
    old = load_file(str(table))
    csv = write_csv(tmp_path / "new.csv", [f"{movie},Remake (2030),Drama,remake"])
    r = invoke(["embed", "--add-movies", str(csv)], ws)
    assert r.exit_code == 1 and f"movie {movie} is already in the table" in r.stderr
    assert table.read_bytes() == before  # nothing changed
    r = invoke(["embed", "--add-movies", str(csv), "--replace"], ws)
    assert r.exit_code == 0 and "added 0 and replaced 1 movie;" in r.stdout
    after = load_file(str(table))
    assert np.array_equal(after["ids"], old["ids"])  # overwritten in place, not appended
    row = int(np.flatnonzero(old["ids"] == movie)[0])
    assert not np.allclose(after["embeddings"][row], old["embeddings"][row])
    others = np.arange(len(old["ids"])) != row
    assert np.array_equal(after["embeddings"][others], old["embeddings"][others])
    catalogue = Store(ws).catalogue
    row = int(catalogue.rows(np.array([movie]))[0])
    assert catalogue.titles[row] == "Remake (2030)"
    assert catalogue.document_terms(row) == ["remake", "drama"]  # its tag, then its genre


@pytest.mark.parametrize("rows, message", [
    (["1x,Bad id,Drama,a"], "movieId '1x' is not an integer"),
    (["900001,A,Drama,a", "900001,B,Drama,b"], "appears more than once"),
    (["900001,,Drama,a"], "empty title"),
    ([], "has no movies"),
    (["900002,Short (2024)"], "line 2: 2 fields, but the header has 4"),
    (["900001,\"Unclosed (2024),Drama,a", "900002,B,Drama,b"],
     "line 2: a quote (\") that is not closed on its line (the value runs to line 3)"),
])
def test_bad_add_movies_file_changes_nothing(tmp_path, ws, rows, message):
    table = ws / "embeddings" / "movies.safetensors"
    before = table.read_bytes()
    r = invoke(["embed", "--add-movies", str(write_csv(tmp_path / "new.csv", rows))], ws)
    assert r.exit_code == 1 and message in r.stderr, r.output
    assert table.read_bytes() == before


def test_add_movies_tags_written_with_commas_are_one_tag_and_the_user_is_told(tmp_path, ws):
    # '|' separates an added movie's tags; "heist, caper" may be one tag (MovieLens allows a
    # comma in a tag), so it is kept as written, and the user hears how it was read
    csv = write_csv(tmp_path / "new.csv", ['900001,Vault (2031),Crime,"heist, caper"',
                                           "900002,Other (2031),Drama,heist|caper"])
    r = invoke(["embed", "--add-movies", str(csv)], ws)
    assert r.exit_code == 0, r.output
    assert (f"note: {csv}, line 2: the tags 'heist, caper' are read as one tag; separate "
            "tags with '|' (heist|caper)") in r.stderr
    catalogue = Store(ws).catalogue
    first, second = catalogue.rows(np.array([900001, 900002]))
    assert catalogue.document_terms(int(first))[0] == "heist, caper"
    assert catalogue.document_terms(int(second))[:2] == ["heist", "caper"]
    r = invoke(["embed", "--add-movies", str(write_csv(tmp_path / "ok.csv", [
        "900003,Fine (2031),Drama,heist|caper"]))], ws)
    assert r.exit_code == 0 and "note:" not in r.stderr


def test_add_movies_missing_column_and_missing_file(tmp_path, ws):
    path = tmp_path / "new.csv"
    path.write_text("movieId,title\n1,A\n", encoding="utf-8")
    r = invoke(["embed", "--add-movies", str(path)], ws)
    assert r.exit_code == 1 and "missing column 'genres'" in r.stderr
    path.write_text("movieId,title,genres,tags,title\n900001,A (2020),Drama,x,B (2021)\n")
    r = invoke(["embed", "--add-movies", str(path)], ws)
    assert r.exit_code == 1 and "line 1: the column title appears 2 times" in r.stderr
    r = invoke(["embed", "--add-movies", str(tmp_path / "nope.csv")], ws)
    assert r.exit_code == 1 and "does not exist" in r.stderr
    r = invoke(["embed", "--add-movies", "/dev/null"], ws)  # exists, but is no file
    assert r.exit_code == 1 and "/dev/null is not a regular file" in r.stderr
    r = invoke(["embed", "--replace"], ws)
    assert r.exit_code == 1 and "--replace only goes with --add-movies" in r.stderr


def test_embed_bf16_on_cpu_is_close_to_fp32(ws):
    fp32 = load_file(str(ws / "embeddings" / "users.safetensors"))["embeddings"]
    r = invoke(["embed", "--precision", "bf16"], ws)
    assert r.exit_code == 0, r.output
    bf16 = load_file(str(ws / "embeddings" / "users.safetensors"))["embeddings"]
    cos = (fp32 * bf16).sum(1)  # unit rows
    assert cos.min() > 0.999 and not np.array_equal(fp32, bf16)
    manifest = json.loads((ws / "embeddings" / "manifest.json").read_text())
    assert manifest["precision"] == "bf16"


@pytest.mark.parametrize("name", ["users.safetensors", "movies.safetensors", "seen.safetensors",
                                  "catalogue.safetensors", "user_tags.safetensors"])
def test_damaged_lookup_files_are_one_line_errors(ws, name):
    path = ws / "embeddings" / name
    whole = path.read_bytes()
    for cut in (whole[:60], whole[:-100]):  # in the header; in the data
        path.write_bytes(cut)
        r = invoke(["recommend", "--user", "7"], ws)
        assert r.exit_code == 1 and "Traceback" not in r.output
        assert r.stderr.startswith("Error:") and "re-run `tagrec embed`" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_numpy_erf_is_within_float32_precision():
    import math

    from tagrec_cli.towers.npbert import erf

    x = np.linspace(-6, 6, 20001)
    exact = np.array([math.erf(v) for v in x])
    assert np.abs(erf(x) - exact).max() < 1.5e-7
    assert erf(np.float32([0.5])).dtype == np.float32 and erf(np.zeros(1))[0] == 0


@pytest.mark.parametrize("query", [["recommend", "--user", "7"],
                                   ["recommend", "--tags", "space opera, heist"],
                                   ["recommend", "--user", "7", "--tags", "heist"],
                                   ["similar", "--movie", "1"],
                                   ["similar", "--title", "a"]])
def test_queries_import_neither_polars_nor_torch(trained, query):
    import subprocess
    import sys

    # The CLI in a fresh interpreter, as a user runs it; then which heavy modules it loaded,
    # and whether rich was (only a line on stderr needs it: --json prints without it).
    unneeded = ("polars", "torch", "scipy", "transformers", "pandas", "numpy.ma",
                "tagrec_cli.cli.data", "tagrec_cli.cli.model", "tagrec_cli.cli.report",
                "tagrec_cli.cli.serve")  # the other commands' modules too
    probe = ("import sys, runpy\n"
             "sys.argv = ['tagrec'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('tagrec_cli', run_name='__main__')\n"
             "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
             f"print(sorted(m for m in {unneeded!r} if m in sys.modules), 'rich' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe, *query, "--json", "--workdir",
                        str(trained)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["recommendations"]
    assert r.stdout.splitlines()[-1] == f"[] {bool(r.stderr)}"


@pytest.mark.parametrize("args, message", [
    (["--add-movies", "{bad}"], "missing column 'genres'"),
    (["--add-movies", "{missing}"], "does not exist"),
    (["--model-dir", "{odd}"], "--model-dir {odd} is not a folder"),  # shown as typed
])
def test_embed_refuses_bad_input_before_it_imports_torch(trained, tmp_path, args, message):
    # The audit's: these took 6-12 s, torch and the model loaded before the file was read.
    import subprocess
    import sys

    bad = tmp_path / "bad.csv"
    bad.write_text("movieId,title\n1,x\n")
    paths = {"bad": bad, "missing": tmp_path / "nowhere", "odd": tmp_path / "[nowhere]"}
    args, message = [a.format(**paths) for a in args], message.format(**paths)
    probe = ("import sys, runpy\n"
             "sys.argv = ['tagrec'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('tagrec_cli', run_name='__main__')\n"
             "except SystemExit as exc:\n    print('exit', exc.code, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe, "embed", *args, "--workdir", str(trained)],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "exit 1 False", r.stdout + r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- recommend --ratings


def write_user_ratings(path: Path, sample_dir: Path, user: int) -> Path:
    ratings = pl.read_csv(sample_dir / "ratings.csv").filter(pl.col("userId") == user)
    ratings.select("movieId", "rating", "timestamp").write_csv(path)
    return path


@pytest.mark.parametrize("user", [1, 3, 4])  # users of the sample data with no tags of their own
def test_ratings_of_a_new_user_are_served_as_ingest_serves_that_user(trained, sample_dir,
                                                                     tmp_path, user):
    from tagrec_cli.datasets.user_ratings import read_user_ratings
    from tagrec_cli.recommend import ratings_query

    path = write_user_ratings(tmp_path / "mine.csv", sample_dir, user)
    # the document ingest wrote for this user (the workspace is a refit: every rating in it)
    users = pl.read_parquet(trained / "ingest" / "users.parquet")
    expected = list(users.filter(pl.col("userId") == user)["tags"][0])
    query, unknown = ratings_query(Store(trained), read_user_ratings(path))
    assert query.tags == expected and unknown == []
    known = json.loads(invoke(["recommend", "--user", str(user), "--json", "-k", "20"],
                              trained).stdout)["recommendations"]
    r = invoke(["recommend", "--ratings", str(path), "--json", "-k", "20"], trained)
    assert r.exit_code == 0, r.output
    new = json.loads(r.stdout)
    assert new["query"] == "your ratings"
    new = new["recommendations"]
    # the same movies, reasons and scores (to float32 noise: numpy tower vs torch tables)
    assert [m["movieId"] for m in new] == [m["movieId"] for m in known]
    assert [m["because"] for m in new] == [m["because"] for m in known]
    np.testing.assert_allclose([m["score"] for m in new], [m["score"] for m in known],
                               atol=2e-5)
    rated = set(pl.read_csv(path)["movieId"].to_list())
    assert rated and not rated & {m["movieId"] for m in new}


@pytest.mark.parametrize("text, message", [
    ("movie,stars\n1,4\n", "lacks the column movieId"),
    ("movieId,rating\n1,great\n", "line 2: rating 'great' is not a number"),
    ("movieId,rating\n1,7\n", "line 2: rating 7 is outside 0.5–5.0"),
    ("movieId,rating\n1,4\n2,nan\n", "line 3: rating 'nan' is not a number"),
    ("movieId,rating\nx1,4\n", "line 2: movieId 'x1' is not an integer"),
    ("movieId,rating\n1_0,4\n", "line 2: movieId '1_0' is not an integer"),  # not 10
    ("movieId,rating\n\u0661,4\n", "line 2: movieId '\u0661' is not an integer"),  # not 1
    ("movieId,rating\n1,4_0\n", "line 2: rating '4_0' is not a number"),
    ("movieId,rating\n1,4\n1,5\n", "line 3: movie 1 was already rated on line 2"),
    ("movieId,rating,timestamp\n1,4,yesterday\n", "timestamp 'yesterday' is not an integer"),
    ("movieId,rating\n", "holds no ratings"),
    ("", "lacks the column movieId"),
    ("userId,movieId,rating\n1,1,4\n2,2,4\n", "the ratings of 2 users"),
    ("movieId,rating,rating\n1,4,1\n", "line 1: the column rating appears 2 times"),
    ("movieId, rating,movieId\n1,4,2\n", "line 1: the column movieId appears 2 times"),
    ("movieId,rating\n99999999,4\n", "none of the 1 rated movies is in the catalogue"),
    (b"movieId,rating\n1,4\xff\n", "is not UTF-8"),
])
def test_a_bad_ratings_file_is_one_line(trained, tmp_path, text, message):
    path = tmp_path / "mine.csv"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    r = invoke(["recommend", "--ratings", str(path)], trained)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_disliked_movie_is_never_given_as_a_reason(trained, tmp_path):
    a, b, c = Store(trained).catalogue.ids[:3].tolist()
    path = tmp_path / "mine.csv"
    path.write_text(f"movieId,rating\n{a},1\n{b},2\n")  # nothing liked (>= 2.5)
    r = invoke(["recommend", "--ratings", str(path), "--json", "-k", "20"], trained)
    assert r.exit_code == 0, r.output
    assert [m["because"]["like"] for m in json.loads(r.stdout)["recommendations"]] == [None] * 20
    path.write_text(f"movieId,rating\n{a},1\n{b},2\n{c},4\n")  # one liked: that one
    r = invoke(["recommend", "--ratings", str(path), "--json", "-k", "20"], trained)
    likes = {m["because"]["like"]["movieId"] for m in json.loads(r.stdout)["recommendations"]}
    assert likes == {c}


def test_ratings_leave_out_unknown_movies_and_exclude_the_rated(trained, tmp_path):
    a, b = Store(trained).catalogue.ids[:2].tolist()
    path = tmp_path / "mine.csv"
    path.write_text(f"movieId,rating\n{a},5\n99999999,4\n{b},1.5\n")
    r = invoke(["recommend", "--ratings", str(path), "--json", "-k", "50"], trained)
    assert r.exit_code == 0, r.output
    assert r.stderr.strip() == ("note: 1 rated movie is not in the catalogue and was left "
                                "out (e.g. movie 99999999)")
    answer = json.loads(r.stdout)
    got = {m["movieId"] for m in answer["recommendations"]}
    assert len(got) == 50 and not got & {a, b}
    assert answer["unknown_movies"] == [99999999]  # as serve's POST /recommend has it
    # --include-seen keeps the rated movies in: every movie is listed with a large k
    everything = ["--json", "-k", "100000"]
    r = invoke(["recommend", "--ratings", str(path), "--include-seen", *everything], trained)
    listed = {m["movieId"] for m in json.loads(r.stdout)["recommendations"]}
    assert {a, b} <= listed and len(listed) == len(Store(trained).table("movie").ids)
    r = invoke(["recommend", "--ratings", str(path), "--user", "3"], trained)
    assert r.exit_code == 1 and "give --ratings alone" in r.stderr


def test_include_seen_with_tags_alone_is_an_error(trained):
    r = invoke(["recommend", "--tags", "heist", "--include-seen"], trained)
    assert r.exit_code == 1
    assert r.stderr.strip() == ("Error: --include-seen needs a user: a taste given as tags "
                                "alone has rated no movie")
    # with a user it means what it says: that user's rated movies come back
    r = invoke(["recommend", "--tags", "heist", "--user", "3", "--include-seen", "--json",
                "-k", "100000"], trained)
    listed = {m["movieId"] for m in json.loads(r.stdout)["recommendations"]}
    assert set(load_seen(trained).of(3)[0].tolist()) <= listed


# ---------------------------------------------------------------- recommend --unrated


def unrated_reference(ws: Path, user: int | None) -> tuple[set[int], dict[int, float]]:
    """The movies --unrated may list for `user` (in the table, no history rating, not rated
    by the user) and their scores, from ingest's ratings and the tables, by hand: the mean
    vector of the movies the user rated >= 4, dotted with each movie's vector (user None:
    the movies alone)."""
    ratings = pl.read_parquet(ws / "ingest" / "ratings.parquet")
    table = load_file(str(ws / "embeddings" / "movies.safetensors"))
    vectors = dict(zip(table["ids"].tolist(), table["embeddings"], strict=True))
    allowed = set(vectors) - set(ratings["movieId"].to_list())
    if user is None:
        return allowed, {}
    mine = ratings.filter(pl.col("userId") == user)
    loved = mine.filter(pl.col("rating") >= 4)["movieId"].to_list()
    profile = np.mean([vectors[m].astype(np.float64) for m in loved], axis=0)
    return allowed, {m: float(vectors[m] @ profile) for m in allowed}


def test_unrated_ranks_only_movies_nobody_rated_by_the_content_profile(tmp_path, ws):
    csv = write_csv(tmp_path / "new.csv", [
        "900001,Heist Night (2031),Crime|Thriller,safe cracking|twist ending",
        "900002,Space Garden (2032),Sci-Fi,space|gardens",
    ])
    assert invoke(["embed", "--add-movies", str(csv)], ws).exit_code == 0
    ratings = pl.read_parquet(ws / "ingest" / "ratings.parquet")
    user = int(ratings.filter(pl.col("rating") >= 4)["userId"][0])
    allowed, scores = unrated_reference(ws, user)
    assert {900001, 900002} <= allowed
    r = invoke(["recommend", "--user", str(user), "--unrated", "--json", "-k", "100000"], ws)
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)["recommendations"]
    assert {x["movieId"] for x in got} == allowed  # every unrated movie, nothing else
    for x in got:
        assert x["score"] == pytest.approx(scores[x["movieId"]], abs=1e-5)
    assert [x["score"] for x in got] == sorted((x["score"] for x in got), reverse=True)
    # the same lists for a new user known by the same ratings; one who also rated an unrated
    # movie (added, 2 stars: not in the profile) does not get it back
    mine = ratings.filter(pl.col("userId") == user).select("movieId", "rating")
    rated = tmp_path / "mine.csv"
    mine.write_csv(rated)
    r = invoke(["recommend", "--ratings", str(rated), "--unrated", "--json", "-k", "100000"], ws)
    assert r.exit_code == 0, r.output
    assert [x["movieId"] for x in json.loads(r.stdout)["recommendations"]] == [
        x["movieId"] for x in got]
    pl.concat([mine, pl.DataFrame({"movieId": [900001], "rating": [2.0]})]).write_csv(rated)
    r = invoke(["recommend", "--ratings", str(rated), "--unrated", "--json", "-k", "100000"], ws)
    assert r.exit_code == 0, r.output
    assert [x["movieId"] for x in json.loads(r.stdout)["recommendations"]] == [
        x["movieId"] for x in got if x["movieId"] != 900001]
    # several users in one call: each gets the list they get alone; a table names the list
    other = int(ratings.filter(pl.col("userId") != user)["userId"][0])
    r = invoke(["recommend", "--user", str(user), "--user", str(other), "--unrated", "--json",
                "-k", "5"], ws)
    both = json.loads(r.stdout)
    assert [b["user"] for b in both] == [user, other]
    assert both[0]["recommendations"] == got[:5]
    alone = invoke(["recommend", "--user", str(other), "--unrated", "--json", "-k", "5"], ws)
    assert both[1]["recommendations"] == json.loads(alone.stdout)["recommendations"]
    r = invoke(["recommend", "--user", str(user), "--unrated", "-k", "2"], ws)
    assert r.exit_code == 0 and f"top 2 unrated movies for user {user}" in r.stdout


def test_unrated_for_tags_keeps_the_tags_vector(tmp_path, ws):
    csv = write_csv(tmp_path / "new.csv", ["900001,Heist Night (2031),Crime,safe cracking"])
    assert invoke(["embed", "--add-movies", str(csv)], ws).exit_code == 0
    args = ["recommend", "--tags", "safe cracking, heist", "--json", "-k", "100000"]
    everything = {x["movieId"]: x["score"]
                  for x in json.loads(invoke(args, ws).stdout)["recommendations"]}
    got = json.loads(invoke([*args, "--unrated"], ws).stdout)["recommendations"]
    assert {x["movieId"] for x in got} == unrated_reference(ws, None)[0]
    assert 900001 in {x["movieId"] for x in got}
    for x in got:  # a tags query has no history: its own score, as the full ranking gives it
        assert x["score"] == pytest.approx(everything[x["movieId"]], abs=1e-6)
    # (900001 carries an asked tag: its score holds the tag match, as in the full ranking)


def test_unrated_with_no_unrated_movie_is_one_line(trained):
    from tagrec_cli.errors import TagrecError
    from tagrec_cli.recommend import build_queries, rank_unrated

    store = Store(trained)
    store.__dict__["unrated_rows"] = np.zeros(0, np.int64)  # every movie rated
    queries = build_queries(store, [int(load_seen(trained).users[0])])
    with pytest.raises(TagrecError, match="every movie in the table has ratings.*add-movies"):
        rank_unrated(store, queries, 5)
