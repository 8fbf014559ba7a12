"""OnnxPolicy's single-row path (an IO binding per thread) answers what a plain run answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from decision_service.features import FEATURE_HIGH, FEATURE_LOW, N_FEATURES
from decision_service.policy import DEFAULT_MODEL_PATH, INPUT_NAME, OUTPUT_NAME, OnnxPolicy

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL_PATH.is_file(), reason="no shipped model")


def observations(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low, high = np.asarray(FEATURE_LOW), np.asarray(FEATURE_HIGH)
    return rng.uniform(low, high, size=(n, N_FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def reference() -> ort.InferenceSession:
    return ort.InferenceSession(str(DEFAULT_MODEL_PATH), providers=["CPUExecutionProvider"])


def plain(session: ort.InferenceSession, rows: np.ndarray) -> np.ndarray:
    return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: rows})[0])


def test_one_row_is_a_plain_run_bit_for_bit(reference: ort.InferenceSession) -> None:
    policy = OnnxPolicy(DEFAULT_MODEL_PATH)
    rows = observations(2000, seed=3)
    batch = policy.q_values(rows)  # the plain path: more than one row
    np.testing.assert_array_equal(batch, plain(reference, rows))
    for i, row in enumerate(rows):
        one = policy.q_values(row)  # (N,) and (1, N) alike
        assert one.shape == (1, 3) and one.dtype == np.float32
        np.testing.assert_array_equal(one[0], batch[i])
        np.testing.assert_array_equal(policy.q_values(row.reshape(1, -1)), one)


def test_an_answer_is_the_callers_copy() -> None:
    policy = OnnxPolicy(DEFAULT_MODEL_PATH)
    first, second = observations(2, seed=5)
    kept = policy.q_values(first)
    expected = kept.copy()
    other = policy.q_values(second)
    assert not np.array_equal(other, expected)
    np.testing.assert_array_equal(kept, expected)  # a later call does not overwrite it
    kept[:] = 0.0  # and writing to it changes nothing in the policy
    np.testing.assert_array_equal(policy.q_values(first), expected)


def test_threads_each_get_their_own_rows_answers(reference: ort.InferenceSession) -> None:
    policy = OnnxPolicy(DEFAULT_MODEL_PATH)
    chunks = [observations(300, seed=10 + k) for k in range(8)]

    def answer(rows: np.ndarray) -> np.ndarray:
        return np.concatenate([policy.q_values(row) for row in rows])

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(answer, chunks))
    for rows, got in zip(chunks, answers, strict=True):
        np.testing.assert_array_equal(got, plain(reference, rows))
