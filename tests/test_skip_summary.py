"""Issue 22, point 10: the test summary names what was skipped and why, in one line."""

from __future__ import annotations

pytest_plugins = ["pytester"]


def test_the_summary_names_the_skipped_tests_and_why(pytester) -> None:
    pytester.makeconftest("from _skip_summary import pytest_terminal_summary  # noqa: F401\n")
    pytester.makepyfile(test_fidelity="""
        import pytest

        @pytest.fixture
        def reference_dir():
            pytest.skip("reference fixtures not found at /x/shared/reference "
                        "(they ship beside the repository)")

        @pytest.mark.parametrize("n", range(3))
        def test_reference(reference_dir, n):
            pass

        def test_cuda():
            pytest.skip("no CUDA device")

        def test_runs():
            pass
    """)
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1, skipped=4)
    lines = [line for line in result.outlines if line.startswith("SKIPPED — ")]
    assert lines == ["SKIPPED — 3 skipped: reference fixtures not found at /x/shared/reference (they ship "
                     "beside the repository); 1 skipped: no CUDA device"]  # fmt: skip


def test_nothing_is_added_when_nothing_was_skipped(pytester) -> None:
    pytester.makeconftest("from _skip_summary import pytest_terminal_summary  # noqa: F401\n")
    pytester.makepyfile(test_ok="def test_ok():\n    pass\n")
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1)
    assert not [line for line in result.outlines if line.startswith("SKIPPED")]
