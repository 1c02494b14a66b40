"""towers/tokens.py: TokenTable pads each batch to its longest document."""

from __future__ import annotations

import numpy as np

from tagrec_cli.towers.tokens import TokenTable


def test_token_table_pads_to_longest_in_batch():
    table = TokenTable(ids=np.array([10, 20, 30]), offsets=np.array([0, 3, 5, 9]),
                       tokens=np.array([101, 7, 102, 101, 102, 101, 8, 9, 102], np.int32),
                       pad_id=0)
    ids, mask = table.batch(np.array([1, 0]))
    assert ids.tolist() == [[101, 102, 0], [101, 7, 102]]  # width 3, not 4 or 128
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert table.row_of(np.array([30, 10])).tolist() == [2, 0]
