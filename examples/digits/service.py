"""The digits classifier, guarded by bento_invguard with one decorator."""

from __future__ import annotations

import bentoml
import numpy as np
from model import MODEL_NAME, SoftmaxModel

from bento_invguard import protect


@protect("invguard.yaml")
@bentoml.service(name="digits_classifier")
class DigitsClassifier:
    stored_model = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        self.model = SoftmaxModel.load(self.stored_model.path_of("weights.npz"))

    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, 10), for rows of 64 pixels (0..16)."""
        return self.model.predict_proba(x)

    @bentoml.api
    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw class scores, shape (n, 10); only the trusted tier may call it."""
        return self.model.logits(x)
