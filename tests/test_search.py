import math

import pytest

from explearn.search import candidate_key, candidates, choose


def test_candidates_are_the_grid_product_minus_fixed_keys():
    grid = {"lr_ratio": [0.1, 1.0], "lam": [1, 2, 3]}
    assert len(candidates(grid)) == 6 and candidates(grid)[0] == {"lr_ratio": 0.1, "lam": 1}
    assert candidates(grid, fixed={"lam": 5}) == [{"lr_ratio": 0.1}, {"lr_ratio": 1.0}]
    assert candidates({}) == [{}]


def test_choose_takes_the_best_mean_and_the_first_on_ties():
    a, b, c = (candidate_key({"x": v}) for v in (1, 2, 3))
    assert choose({a: [0.5, 0.7], b: [0.7, 0.5], c: [0.1]}) == (a, pytest.approx(0.6))  # tie: first
    assert choose({a: [0.5], b: [0.9, math.nan], c: []})[0] == b  # NaN and missing runs do not count
    with pytest.raises(ValueError, match="no search candidate"):
        choose({a: [], b: [math.nan]})
