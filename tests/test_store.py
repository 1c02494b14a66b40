"""store/: the embedding tables' id -> row lookup."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tagrec_cli.errors import ArtifactError
from tagrec_cli.store.embeddings import EmbeddingTable, read_table_file


def test_embedding_table_rows_of_marks_unknown():
    table = EmbeddingTable(ids=np.array([5, 1, 9]), vectors=np.zeros((3, 2), np.float32))
    assert table.rows_of(np.array([9, 5, 4, 100])).tolist() == [2, 0, -1, -1]


IDS = {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}


@pytest.mark.parametrize("header", [
    [], "x", None, {"ids": "x"}, {"ids": {**IDS, "dtype": ["I64"]}}, {"ids": {**IDS, "shape": 3}},
    {"ids": {**IDS, "shape": [-1], "data_offsets": [0, -8]}},
    {"ids": {**IDS, "shape": [10**30]}}, {"ids": IDS},  # no "embeddings"
])
def test_a_table_file_with_a_header_of_another_shape_is_damaged(tmp_path, header):
    # read_table_file's own reader (map_tensors) took the JSON header for a dict of dicts:
    # a list or a string in its place was a TypeError traceback in recommend and similar
    text = json.dumps(header).encode()
    path = tmp_path / "movies.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + bytes(16))
    with pytest.raises(ArtifactError, match=r"is missing or damaged \((Value|Key)Error\)"):
        read_table_file(path)


def test_tables_that_do_not_match_their_manifest_are_damaged(
        embedded_sample_refit_300pairs_dim16, copy_workspace, tmp_path):
    import shutil

    from helpers import invoke
    from safetensors.numpy import load_file, save_file

    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    folder = ws / "embeddings"
    users, movies = folder / "users.safetensors", folder / "movies.safetensors"
    good = tmp_path / "movies.safetensors"
    shutil.copy2(movies, good)
    arrays = load_file(str(movies))
    cases = {"another table": lambda: shutil.copy2(users, movies),
             "a row short": lambda: save_file({k: v[:-1] for k, v in arrays.items()},
                                              str(movies)),
             "a repeated id": lambda: save_file(
                 {"ids": np.concatenate([arrays["ids"][:-1], arrays["ids"][:1]]),
                  "embeddings": arrays["embeddings"]}, str(movies)),
             "another dim": lambda: save_file({"ids": arrays["ids"],
                                               "embeddings": arrays["embeddings"][:, :4]},
                                              str(movies))}
    for name, damage in cases.items():
        damage()
        for query in (["recommend", "--user", "1"], ["similar", "--movie", "1"]):
            r = invoke(query, ws)
            assert r.exit_code == 1, (name, r.output)
            assert "does not match its manifest" in r.stderr, (name, r.stderr)
            assert "re-run `tagrec embed`" in r.stderr and "Traceback" not in r.output
        shutil.copy2(good, movies)
    save_file({k: v[:-1] for k, v in load_file(str(users)).items()}, str(users))
    r = invoke(["recommend", "--user", "1"], ws)  # the user table is read row by row
    assert r.exit_code == 1 and "does not match its manifest" in r.stderr


def test_title_forms_fold_case_accents_and_a_trailing_article():
    from tagrec_cli.store.catalogue import fold, title_forms

    assert title_forms("Matrix, The (1999)") == ("matrix, the (1999)", "the matrix (1999)")
    assert title_forms("Few Good Men, A") == ("few good men, a", "a few good men")
    assert title_forms("Auberge espagnole, L' (2002)")[1] == "l'auberge espagnole (2002)"
    assert title_forms("Them, Again (2001)") == ("them, again (2001)",)  # no article
    assert fold("Søren's CAFÉ") == "soren's cafe" and fold("Amélie") == "amelie"


def test_a_title_search_reads_titles_as_people_type_them(tmp_path):
    # The audit's: "The Matrix" found nothing (MovieLens writes "Matrix, The"), "The Dark
    # Knight" picked "Batman: The Dark Knight Returns", and "soren" missed "Søren's Planet".
    from tagrec_cli.store.catalogue import Catalogue, write_catalogue

    titles = ["Matrix, The (1999)", "Matrix Reloaded, The (2003)",
              "Batman: The Dark Knight Returns, Part 2 (2013)", "Dark Knight, The (2008)",
              "Søren's Planet (2001)"]
    n = len(titles)
    write_catalogue(tmp_path / "c.safetensors", {
        "movieId": list(range(1, n + 1)), "title": titles, "year": [None] * n,
        "genres": ["Drama"] * n, "tags": [[]] * n, "tag_counts": [[]] * n,
        "n_ratings": [10, 20, 50, 5, 1]})
    catalogue = Catalogue.read(tmp_path / "c.safetensors")
    assert catalogue.pick("The Matrix") == (1, [1, 2])  # equal beats the more rated sequel
    assert catalogue.pick("the dark knight") == (4, [3, 4])
    assert catalogue.pick("matrix, the") == (1, [1])  # MovieLens's own spelling still works
    assert catalogue.pick("soren") == (5, [5])
    assert catalogue.close_titles("The Matrx")[0] == "Matrix, The (1999)"
