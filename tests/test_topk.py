"""topk.py: the one top-k rule of recommend, similar and evaluate, and id -> row lookups."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tagrec_cli.topk import rows_of, top_k


def test_top_k_ties_go_to_the_lower_row():
    # 0.2 appears at rows 0, 2 and 4: the third place goes to row 0, the lowest.
    scores = np.array([[0.2, 0.9, 0.2, 0.5, 0.2]])
    assert top_k(scores, 3)[0].tolist() == [[1, 3, 0]]
    # All tied: the first k rows, whatever argpartition picked.
    assert top_k(np.zeros((2, 50)), 3)[0].tolist() == [[0, 1, 2], [0, 1, 2]]


def test_top_k_excludes_history_and_pads_short_rows():
    scores = np.array([[0.2, 0.9, 0.2, 0.5], [1.0, 2.0, 3.0, 4.0]])
    exclude = sp.csr_matrix(np.array([[0, 0, 0, 1], [1, 0, 1, 1]]))
    # Row 0 loses row 3 (0.5): 0.9, then the 0.2 tie by row. Row 1 has only row 1 left.
    assert top_k(scores, 3, exclude)[0].tolist() == [[1, 0, 2], [1, -1, -1]]
    # k larger than the catalogue.
    assert top_k(np.array([[0.1, 0.3]]), 4)[0].tolist() == [[1, 0, -1, -1]]
    # NaN scores are never recommended.
    assert top_k(np.array([[np.nan, 0.1]]), 2)[0].tolist() == [[1, -1]]
    with pytest.raises(ValueError):
        top_k(scores, 0)


def test_top_k_values_follow_the_columns_and_pad_with_minus_inf():
    cols, values = top_k(np.array([[0.2, 0.9, 0.5]]), 4, [np.array([2])])
    assert cols.tolist() == [[1, 0, -1, -1]]
    assert values[0, :2].tolist() == pytest.approx([0.9, 0.2])
    assert np.isneginf(values[0, 2:]).all()


def test_top_k_list_exclusions_equal_sparse_ones():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(6, 30)), 1)  # rounded: many ties
    mask = rng.random((6, 30)) < 0.3
    as_lists = [np.flatnonzero(row) for row in mask]
    by_list, by_sparse = top_k(scores, 8, as_lists), top_k(scores, 8, sp.csr_matrix(mask))
    assert np.array_equal(by_list[0], by_sparse[0])
    assert np.array_equal(by_list[1], by_sparse[1])
    assert not any(set(c.tolist()) & set(e.tolist()) for c, e in zip(by_list[0], as_lists,
                                                                      strict=True))


def sorted_top_k(scores: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray:
    """The rule spelled out: per row, a full sort by (-score, column), -inf and NaN last."""
    out = np.full((len(scores), k), -1, dtype=np.int64)
    for r, row in enumerate(np.asarray(scores, dtype=np.float64)):
        s = np.where(np.isnan(row), -np.inf, row)
        s[exclude[r].indices] = -np.inf
        best = np.lexsort((np.arange(len(s)), -s))[:k]
        best = best[np.isfinite(s[best])]
        out[r, :len(best)] = best
    return out


@pytest.mark.parametrize("kind", ["normal", "ties", "few finite", "float32 ties"])
@pytest.mark.parametrize("n", [100, 4096, 5000, 9742])  # 4096 and up: the two-stage select
def test_top_k_equals_a_full_sort(kind, n):
    rng = np.random.default_rng(n)
    for k in (1, 10, 100):
        if kind == "normal":
            scores = rng.standard_normal((5, n)).astype(np.float32)
        elif kind == "ties":  # few distinct values: ties across chunks at the k-th place
            scores = rng.integers(0, 5, (5, n)).astype(np.float64)
        elif kind == "few finite":  # fewer finite values than k in some rows
            scores = rng.standard_normal((5, n))
            scores[rng.random((5, n)) < 0.995] = np.nan
        else:
            scores = np.round(rng.standard_normal((5, n)), 1).astype(np.float32)
        exclude = sp.csr_matrix(rng.random((5, n)) < 0.05)
        assert np.array_equal(top_k(scores, k, exclude)[0], sorted_top_k(scores, k, exclude))


def test_rows_of_marks_absent_ids():
    # Example of the docstring: table [5, 1, 9], ids [9, 4] -> [2, -1]
    assert rows_of(np.array([5, 1, 9]), np.array([9, 4])).tolist() == [2, -1]
    assert rows_of(np.zeros(0, np.int64), np.array([3])).tolist() == [-1]


def test_check_k_bounds_and_names_the_cap():
    from tagrec_cli.errors import QueryError
    from tagrec_cli.topk import check_k

    check_k(1)
    check_k(5, 5)
    with pytest.raises(QueryError, match=r"^k must be at least 1 \(got 0\)$") as caught:
        check_k(0)
    assert (caught.value.parameter, caught.value.unknown, caught.value.names) == ("k", False,
                                                                                  ("k",))
    with pytest.raises(QueryError, match=r"^k must be at most 5 \(got 6\)$"):
        check_k(6, 5)
    with pytest.raises(QueryError, match=r"^k must be at most the catalogue's 5 movies"):
        check_k(6, 5, "the catalogue's 5 movies")
