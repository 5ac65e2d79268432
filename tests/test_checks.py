import pytest

from wavefabric.model.checks import check_int, check_sizes


def test_check_int():
    assert check_int("rows", 3) == 3
    assert check_int("steps", 0, lo=0) == 0
    for bad in (0, -1, 2.0, True, "4"):
        with pytest.raises(ValueError, match=r"^rows must be an integer >= 1, not "):
            check_int("rows", bad)


def test_check_sizes_names_the_first_bad_one():
    check_sizes(m=1, n=2)
    with pytest.raises(ValueError, match=r"^n must be an integer >= 1, not 0$"):
        check_sizes(m=1, n=0, k=0)
