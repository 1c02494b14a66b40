"""towers/collab.py: the collaborative part of the towers (a learned vector per movie, the
user's liked movies pooled), trained, embedded and kept inductive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch
from helpers import rated_user_features

from tagrec_cli.towers import collab


def test_liked_matrix_by_hand():
    # User 1 liked movies 10 and 30 (20 is a dislike, 99 has no row): two entries of
    # 1/sqrt(2). User 2 liked nothing; user 3 is not in the matrix's users.
    ratings = pl.DataFrame({"userId": [1, 1, 1, 1, 2, 3], "movieId": [10, 20, 30, 99, 10, 10],
                            "rating": [4.0, 1.0, 3.0, 5.0, 2.0, 5.0]})
    x = collab.liked_matrix(np.array([1, 2]), np.array([10, 20, 30]), ratings, 2.5)
    assert x.toarray() == pytest.approx(np.array([[2 ** -0.5, 0, 2 ** -0.5], [0, 0, 0]]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_data: Path, tiny_bert: Path) -> Path:
    from tagrec_cli.config import IngestConfig, ModelConfig, TrainConfig
    from tagrec_cli.embed import run_embed
    from tagrec_cli.ingest import run_ingest
    from tagrec_cli.train import run_train

    work = tmp_path_factory.mktemp("collab")
    run_ingest(small_data, work, IngestConfig(holdout_fraction=0.2))
    run_train(work, ModelConfig(base_model=str(tiny_bert), dim=16, collaborative=True),
              TrainConfig(epochs=2, device="cpu", head_lr=0.01))
    run_embed(work, device="cpu")
    return work


def test_tables_are_text_plus_the_collaborative_part(trained: Path):
    from tagrec_cli.store import Store
    from tagrec_cli.store.ingested import documents
    from tagrec_cli.towers.encode import encode_documents
    from tagrec_cli.towers.model import load_model

    model, tokenizer, config = load_model(trained / "model")
    assert config["model"]["collaborative"] and config["model"]["id_rows"] == 300
    assert model.id_vectors.weight.abs().sum() > 0  # it learned something
    assert model.id_movies.tolist() == documents(trained, "movie")["movieId"].to_list()
    store = Store(trained)
    movies = store.table("movie")
    ids = movies.ids[:5]
    from tagrec_cli.store.ingested import side_features

    feats = side_features(trained, "movie", ids, model.cfg.features)
    docs = dict(documents(trained, "movie").iter_rows())
    text = encode_documents(model, tokenizer, [docs[int(i)] for i in ids], torch.device("cpu"),
                            "movie", features=feats)
    # Unit text vectors are not the table's: the table adds V[movie] before normalising.
    assert not np.allclose(text, movies.vectors[:5], atol=1e-4)
    from tagrec_cli.towers.encode import encode_rows
    from tagrec_cli.towers.tokens import TokenTable, tokenize

    offsets, tokens = tokenize(tokenizer, [docs[int(i)] for i in ids], model.cfg.max_length)
    table = TokenTable(np.arange(5), offsets, tokens, tokenizer.pad_token_id or 0)
    raw = encode_rows(model, table, np.arange(5), torch.device("cpu"), 8, "movie",
                      features=torch.from_numpy(feats))
    full = torch.nn.functional.normalize(collab.with_collab(model, "movie", ids, raw), dim=1)
    assert np.allclose(full.numpy(), movies.vectors[:5], atol=1e-5)


def test_a_movie_without_a_row_is_its_text_alone(trained: Path):
    from tagrec_cli.towers.model import load_model

    model, _, _ = load_model(trained / "model")
    part = collab.movie_part(model, np.array([model.id_movies[0].item(), 10 ** 9]))
    assert part[1].abs().sum() == 0
    assert torch.equal(part[0], model.id_vectors.weight[0])


def test_a_rated_user_is_pooled_from_their_liked_movies(trained: Path):
    from tagrec_cli.towers.model import load_model

    model, tokenizer, _ = load_model(trained / "model")
    movies = model.id_movies[:3].tolist()
    ratings = pl.DataFrame({"userId": [7, 7, 7], "movieId": movies, "rating": [5.0, 4.0, 1.0]})

    feats = rated_user_features(ratings["rating"].to_numpy(), np.array([1, 2, 3]), 2.5,
                                model.cfg.features)[None, :]
    with_pool = collab.encode_rated_users(model, tokenizer, ["drama"], feats, ratings,
                                          np.array([7]), 2.5, torch.device("cpu"))
    expected_pool = (model.id_vectors.weight[0] + model.id_vectors.weight[1]) / 2 ** 0.5
    got = collab.pool(model, collab.liked_matrix(np.array([7]), model.id_movies.numpy(),
                                                 ratings, 2.5))
    assert torch.allclose(got[0], expected_pool, atol=1e-6)
    assert with_pool.shape == (1, 16) and np.isclose(np.linalg.norm(with_pool), 1.0)


def test_gather_pool_equals_the_csr_product_and_its_gradient():
    # The device path (an embedding bag over the rows' entries, sized ahead) against scipy's
    # CSR product, forward and backward, on rows picked out of order and with a repeat.
    rng = np.random.default_rng(0)
    dense = (rng.random((6, 9)) < 0.4) * rng.random((6, 9))
    dense[2] = 0  # a user who liked nothing
    liked = collab._pool_weights(*np.nonzero(dense), dense.shape)
    device_liked = collab.DeviceLiked(liked, torch.device("cpu"))
    rows = torch.tensor([4, 0, 2, 4, 1])
    total = int(device_liked.pool_sizes(rows.numpy(), np.array([0, len(rows)]))[0])
    assert total == sum(np.count_nonzero(dense[r]) for r in rows.tolist())

    weight = torch.randn(9, 5, dtype=torch.float32, requires_grad=True)
    probe = torch.randn(len(rows), 5)
    got = collab.gather_pool(weight, device_liked.indptr, device_liked.indices,
                             device_liked.data, rows, total)
    (got * probe).sum().backward()
    grad_gather, weight.grad = weight.grad.clone(), None
    want = collab._SparseTimesDense.apply(weight, sp.csr_matrix(liked[rows.numpy()],
                                                                dtype=np.float32))
    (want * probe).sum().backward()
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(grad_gather, weight.grad, atol=1e-6)
    assert got[2].abs().sum() == 0  # no likes, no pool


def test_device_liked_weights_and_mask_by_hand():
    # users 0..2, movies 0..3: user 0 liked movies 1 and 3, user 2 liked movie 0.
    liked = collab._pool_weights(np.array([0, 0, 2]), np.array([1, 3, 0]), (3, 4))
    d = collab.DeviceLiked(liked, torch.device("cpu"))
    w = d.weight(torch.tensor([0, 0, 1, 2, 2]), torch.tensor([1, 2, 1, 0, 3]))
    assert w.tolist() == pytest.approx([2 ** -0.5, 0, 0, 1.0, 0])
    mask = d.contains(torch.tensor([0, 2]), torch.tensor([3, 0, 1]))
    assert mask.tolist() == [[True, False, True], [False, True, False]]
    empty = collab.DeviceLiked(collab._pool_weights(np.zeros(0, int), np.zeros(0, int), (2, 2)),
                               torch.device("cpu"))
    assert empty.weight(torch.tensor([0]), torch.tensor([1])).tolist() == [0.0]
    assert not empty.contains(torch.tensor([0, 1]), torch.tensor([0])).any()


def test_the_numpy_tower_pools_as_the_torch_tower(trained: Path):
    # The query path (recommend --ratings, --user --tags, serve) encodes a user in numpy;
    # with liked movies it must add the same pool the torch tower adds.
    from tagrec_cli.towers.model import load_model
    from tagrec_cli.towers.npbert import read_tower

    model, tokenizer, _ = load_model(trained / "model")
    tower = read_tower(trained / "model", "user")
    assert tower.id_vectors is not None and tower.id_movies.dtype == np.int64
    assert tower.id_movies.tolist() == model.id_movies.tolist()
    ids = model.id_movies.numpy()
    liked = [ids[[0, 5, 9]], np.zeros(0, np.int64), np.array([ids[3], 10 ** 9])]
    docs = ["drama, heist", "comedy", "noir"]
    n_feats = model.cfg.n_features("user")
    feats = np.random.default_rng(1).random((3, n_feats)).astype(np.float32) if n_feats else None
    want = collab.encode_liked_users(model, tokenizer, docs, feats, liked)
    got = tower.encode(docs, feats, liked)
    np.testing.assert_allclose(got, want, atol=1e-5)
    text_only = tower.encode(docs, feats)
    np.testing.assert_allclose(got[1], text_only[1], atol=1e-6)  # liked nothing: text alone
    assert not np.allclose(got[0], text_only[0], atol=1e-3)  # the pool moved the vector
