"""The tolerance check every verified transformation uses."""

from __future__ import annotations

import numpy as np

from onnxdeploy.numerics import compare_outputs, diff_tensor


def test_equal_arrays_pass_with_zero_error():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    d = diff_tensor("x", a, a.copy(), atol=0, rtol=0)
    assert d.passed and d.max_abs == 0 and d.max_rel == 0 and d.cosine == 1.0


def test_tolerance_is_atol_plus_rtol_times_reference():
    ref = np.array([1.0, 100.0], dtype=np.float32)
    assert diff_tensor("x", ref, ref + np.array([0.5, 5.0], np.float32), atol=0.5, rtol=0.05).passed
    assert not diff_tensor("x", ref, ref + np.array([0.6, 0.0], np.float32), atol=0.5, rtol=0.05).passed


def test_relative_error_near_zero_is_floored_at_atol():
    ref = np.array([0.0, 1e-30, 1.0], dtype=np.float32)
    got = ref + np.float32(1e-6)
    d = diff_tensor("x", ref, got, atol=1e-4, rtol=1e-3)
    assert d.passed and d.max_rel <= 1e-2


def test_shape_mismatch_fails_with_a_note():
    d = diff_tensor("x", np.zeros((2, 3)), np.zeros((3, 2)), atol=1, rtol=1)
    assert not d.passed and "shape" in d.note


def test_nan_in_both_is_equal_but_nan_in_one_fails():
    ref = np.array([np.nan, 1.0])
    assert diff_tensor("x", ref, ref.copy(), atol=0, rtol=0).passed
    assert not diff_tensor("x", np.array([0.0, 1.0]), ref, atol=1, rtol=1).passed


def test_missing_outputs_fail_the_comparison():
    cmp = compare_outputs({"a": np.zeros(2), "b": np.zeros(2)}, {"a": np.zeros(2)})
    assert not cmp.passed and cmp.missing == ["b"] and "missing b" in cmp.summary()


def test_infinities_of_opposite_sign_fail_without_runtime_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = diff_tensor("x", np.array([np.inf, 1.0]), np.array([-np.inf, 1.0]), atol=1, rtol=1)
    assert not d.passed and d.max_abs == float("inf")


def test_diff_of_a_large_tensor_needs_little_extra_memory():
    """GPT-2's logits (26 MB) once took +370 MB of float64 temporaries; the statistics are now accumulated in chunks."""
    import tracemalloc

    rng = np.random.default_rng(0)
    ref = rng.standard_normal(4_000_000).astype(np.float32).reshape(1000, 4000)
    got = ref + np.float32(1e-6)
    got[999, 3999] += 1
    tracemalloc.start()
    diff = diff_tensor("logits", ref, got, atol=1e-4, rtol=1e-3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < ref.nbytes / 2  # 16 MB arrays; the chunks' temporaries stay a few MB
    assert not diff.passed and abs(diff.max_abs - 1) < 1e-3 and diff.cosine > 0.999


def test_infinite_error_reports_infinite_relative_error():
    diff = diff_tensor("x", np.array([np.inf, 1.0], np.float32), np.array([1.0, 1.0], np.float32), atol=1e-4, rtol=1e-3)
    assert diff.max_abs == np.inf and diff.max_rel == np.inf and not diff.passed
