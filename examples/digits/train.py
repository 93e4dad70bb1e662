"""Train the digits model, save it to the BentoML model store, fit the reference profile.

python train.py            # trains only if no model is stored yet
python train.py --force    # trains a new version
"""

from __future__ import annotations

import argparse
from pathlib import Path

import bentoml
import numpy as np
from model import MODEL_NAME, SoftmaxModel, fit_weights, load_split

from bento_invguard import Profile

HERE = Path(__file__).resolve().parent
PROFILE_PATH = HERE / "digits.profile.json"


def stored_model_exists() -> bool:
    try:
        bentoml.models.get(f"{MODEL_NAME}:latest")
    except bentoml.exceptions.NotFound:
        return False
    return True


def train() -> str:
    x_train, x_test, y_train, y_test = load_split()
    coef, intercept = fit_weights(x_train, y_train)
    accuracy = float(
        (SoftmaxModel(coef, intercept).predict_proba(x_test).argmax(1) == y_test).mean()
    )
    with bentoml.models.create(
        MODEL_NAME,
        labels={"example": "digits"},
        metadata={"test_accuracy": round(accuracy, 4), "n_features": 64, "n_classes": 10},
    ) as model:
        np.savez(Path(model.path) / "weights.npz", coef=coef, intercept=intercept)
    Profile.fit(x_train).save(PROFILE_PATH)
    print(f"saved {model.tag} (held-out accuracy {accuracy:.3f}) and {PROFILE_PATH.name}")
    return str(model.tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--force", action="store_true", help="train even if a model is stored")
    args = parser.parse_args()
    if args.force or not stored_model_exists():
        train()
    else:
        print(f"{MODEL_NAME}:latest is already in the model store")


if __name__ == "__main__":
    main()
