"""Fixtures of the 2-D tests (tests/unit/test_plane.py, test_density.py): seeded point sets and one
short training of each model, built once per module."""

import pytest

from odenet.data.toy2d import make_dataset, split


def _points(name: str, n: int, noise: float, seed: int) -> tuple:
    return split(make_dataset(name, n=n, noise=noise, seed=seed), seed=seed)


@pytest.fixture(scope="module")
def moons() -> tuple:
    """(train, test): 600 moons points, noise 0.1, seed 3."""
    return _points("moons", 600, 0.1, 3)


@pytest.fixture(scope="module")
def moons_run(moons):
    """The plane classifier trained 150 iterations on ``moons``."""
    from odenet.plane.classifier import PlaneConfig, train_plane

    return train_plane(PlaneConfig(iterations=150), *moons)


@pytest.fixture(scope="module")
def rings() -> tuple:
    """(train, test): 500 ring-and-blobs points, noise 0.05, seed 1."""
    return _points("ringblobs", 500, 0.05, 1)


@pytest.fixture(scope="module")
def rings_run(rings):
    """The density flow trained 150 iterations on ``rings``."""
    from odenet.plane.density import DensityConfig, train_density

    return train_density(DensityConfig(iterations=150), *rings)
