"""Exact top-k per row of a sparse count matrix, checked against a dense brute force."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tagrec_cli.toptags import top_k_per_row, top_tags_for_users


def brute_force_top_k(dense: np.ndarray, k: int) -> list[tuple[int, int, int]]:
    """(row, col, position) of the k largest positive entries per row, ties to the lower col."""
    out = []
    for r, row in enumerate(np.asarray(dense)):
        ranked = sorted((-int(row[c]), c) for c in range(row.shape[0]) if row[c] > 0)
        out += [(r, c, p) for p, (_, c) in enumerate(ranked[:k])]
    return out


def as_triples(result: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[tuple[int, int, int]]:
    rows, cols, pos = result
    assert len(rows) == len(cols) == len(pos)
    return list(zip(rows.tolist(), cols.tolist(), pos.tolist(), strict=True))


def test_docstring_example() -> None:
    # [[0, 2, 2, 1]], k=2: counts 2, 2 tie -> lower column first: cols 1, 2.
    assert as_triples(top_k_per_row(sp.csr_matrix(np.array([[0, 2, 2, 1]])), 2)) == [
        (0, 1, 0), (0, 2, 1)]


def test_hand_example_with_ties_empty_rows_and_short_rows() -> None:
    dense = np.array([
        [1, 3, 0, 3, 1, 2],  # 3,3 at cols 1,3; then 2 at col 5; then 1,1 at cols 0,4
        [0, 0, 0, 0, 0, 0],  # empty row: nothing
        [0, 0, 5, 0, 0, 0],  # one entry, k larger than the row: just it
        [1, 1, 1, 1, 1, 1],  # all tied: the lowest columns
    ])
    got = as_triples(top_k_per_row(sp.csr_matrix(dense), 3))
    assert got == [(0, 1, 0), (0, 3, 1), (0, 5, 2),
                   (2, 2, 0),
                   (3, 0, 0), (3, 1, 1), (3, 2, 2)]


def test_duplicates_in_unsorted_coo_are_summed() -> None:
    # Entries (0,2) given twice with 1 each -> count 2, beating (0,0) = 1 and (0,1) = 1.
    coo = sp.coo_matrix((np.ones(4, np.int32), ([0, 0, 0, 0], [2, 1, 2, 0])), shape=(1, 3))
    assert as_triples(top_k_per_row(coo.tocsr(), 2)) == [(0, 2, 0), (0, 0, 1)]


def test_empty_matrices() -> None:
    assert as_triples(top_k_per_row(sp.csr_matrix((0, 5), dtype=np.int32), 3)) == []
    assert as_triples(top_k_per_row(sp.csr_matrix((4, 0), dtype=np.int32), 3)) == []
    assert as_triples(top_k_per_row(sp.csr_matrix((4, 5), dtype=np.int32), 3)) == []
    liked = sp.csr_matrix((0, 3), dtype=np.int32)
    carries = sp.csr_matrix(np.eye(3, dtype=np.int32))
    assert as_triples(top_tags_for_users(liked, carries, 2)) == []


# Small counts (0..3) make ties the rule rather than the exception.
small_counts = st.integers(0, 8).flatmap(
    lambda n: st.integers(0, 8).flatmap(
        lambda m: arrays(np.int64, (n, m), elements=st.integers(0, 3))))


@settings(max_examples=300, deadline=None)
@given(dense=small_counts, k=st.integers(1, 10))
def test_top_k_per_row_matches_brute_force(dense: np.ndarray, k: int) -> None:
    assert as_triples(top_k_per_row(sp.csr_matrix(dense), k)) == brute_force_top_k(dense, k)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_users=st.integers(0, 30), n_movies=st.integers(1, 12),
       n_tags=st.integers(1, 12), k=st.integers(1, 15),
       chunk=st.sampled_from([1, 2, 7, 10_000]), workers=st.sampled_from([1, 2]))
def test_top_tags_for_users_matches_dense_product(seed: int, n_users: int, n_movies: int,
                                                  n_tags: int, k: int, chunk: int,
                                                  workers: int) -> None:
    rng = np.random.default_rng(seed)
    liked = (rng.random((n_users, n_movies)) < rng.random()).astype(np.int32)
    carries = (rng.random((n_movies, n_tags)) < rng.random()).astype(np.int32)
    got = as_triples(top_tags_for_users(sp.csr_matrix(liked), sp.csr_matrix(carries), k,
                                        chunk_rows=chunk, workers=workers))
    assert got == brute_force_top_k(liked @ carries, k)


@pytest.mark.parametrize("chunk", [1, 3, 1000])
@pytest.mark.parametrize("workers", [1, 2])
def test_top_tags_for_users_larger_random(chunk: int, workers: int) -> None:
    # 200 users x 60 movies x 40 tags, sparse enough that many users have few or no tags
    # (rows shorter than k) and counts are small (many ties).
    rng = np.random.default_rng(7)
    liked = sp.random(200, 60, density=0.05, random_state=1, format="csr",
                      data_rvs=lambda n: np.ones(n)).astype(np.int32)
    carries = sp.random(60, 40, density=0.1, random_state=2, format="csr",
                        data_rvs=lambda n: np.ones(n)).astype(np.int32)
    dense = liked.toarray() @ carries.toarray()
    assert (dense.sum(axis=1) == 0).any()  # some empty rows
    for k in (1, 4, int(rng.integers(5, 50))):
        got = as_triples(top_tags_for_users(liked, carries, k, chunk_rows=chunk,
                                            workers=workers))
        assert got == brute_force_top_k(dense, k)
