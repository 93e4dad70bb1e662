"""The digits classifier: trained with scikit-learn, stored and served as plain arrays.

The model store holds ``weights.npz`` (coefficients and intercepts), loaded
with ``allow_pickle=False``: nothing in this example unpickles anything.
"""

from __future__ import annotations

import numpy as np

MODEL_NAME = "invguard_digits"
N_FEATURES = 64
N_CLASSES = 10


def load_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 8x8 digits bundled with scikit-learn, split 75/25 (x_train, x_test, y_train, y_test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=seed, stratify=digits.target
    )
    return x_train, x_test, y_train, y_test


def fit_weights(x_train: np.ndarray, y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=0.5)
    clf.fit(x_train / 16.0, y_train)
    return clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64)


class SoftmaxModel:
    """Multinomial logistic regression on 0..16 pixel values."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.coef = coef
        self.intercept = intercept

    @classmethod
    def load(cls, path: str) -> SoftmaxModel:
        with np.load(path, allow_pickle=False) as data:
            return cls(data["coef"], data["intercept"])

    def logits(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) / 16.0) @ self.coef.T + self.intercept

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = self.logits(x)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
