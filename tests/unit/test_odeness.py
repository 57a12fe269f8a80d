"""The ODE-ness gap and critical step sizes (Ott et al., ICLR 2021) on models with known behaviour."""

import pandas as pd
import pytest
import torch

from odenet import RKNet, load_model
from odenet.data.mnist import load_mnist
from odenet.inspect.analysis import critical_step_sizes, odeness_gap
from odenet.train.checkpoints import pretrained_models, shipped_odeness, summarize_checkpoint


@pytest.fixture(scope="module")
def test_split():
    return load_mnist()[1].subset(500)


def test_zero_vector_field_has_no_gap(test_split):
    """f = 0 (BatchNorm scale and shift zeroed): every solver returns h(t0); the gap is exactly 0."""
    torch.manual_seed(0)
    m = RKNet().eval()
    for block in (m.gradient.block1, m.gradient.block2):
        block[1].weight.data.zero_()
        block[1].bias.data.zero_()
    g = odeness_gap(m, test_split)
    assert g.gap == 0.0 and not g.solver_bound
    assert g.train_solver == "rk4 x1" and g.reference_solver.startswith("dopri5 adaptive")


def test_critical_step_is_the_largest_step_within_half_a_point():
    grid = pd.DataFrame([dict(integrator="euler", steps=n, accuracy=a) for n, a in
                         [(1, 0.90), (2, 0.97), (4, 0.986), (8, 0.989)]] +
                        [dict(integrator="rk4", steps=n, accuracy=0.99) for n in (1, 2)])
    crit = critical_step_sizes(grid, reference_acc=0.99, span=2.0)
    assert crit == {"euler": pytest.approx(0.5), "rk4": pytest.approx(2.0)}  # 4 steps of 0.5: 98.6 within 0.5
    assert critical_step_sizes(grid, reference_acc=0.5, span=1.0) == {"euler": None, "rk4": None}


def test_shipped_euler_model_is_solver_bound_and_rk4_is_not(test_split):
    euler = odeness_gap(load_model("euler_1step"), test_split)
    rk4 = odeness_gap(load_model("rk4_1step"), test_split)
    assert euler.gap > 0.1 and euler.solver_bound  # ~99% with euler x1, ~76% with an accurate solve
    assert abs(rk4.gap) < 0.01 and not rk4.solver_bound


def test_shipped_records_match_their_files_and_label_solver_bound_models():
    models = pretrained_models()
    for name, path in models.items():
        rec = shipped_odeness(name, path)
        assert rec is not None, f"odenet/model/pretrained/odeness.json is missing or stale for {name}"
        label = summarize_checkpoint(path, name).label()
        assert ("works only with its training solver" in label) == rec["solver_bound"]
    assert shipped_odeness("euler_1step", models["euler_1step"])["solver_bound"]


def test_shipped_kinetic_model_is_solver_independent_and_cheaper(test_split):
    """The third shipped model (issue #16): on 300 test images, every solver of the bar agrees
    within a point and the adaptive solve needs far fewer evaluations than rk4_1step's."""
    from odenet.inspect.analysis import SOLVER_INDEPENDENCE_BAR, solver_table

    small = test_split.subset(300)
    kin = solver_table(load_model("rk4_kinetic"), small)
    assert list(kin.solver) == [s.label() for s in SOLVER_INDEPENDENCE_BAR]
    assert kin.accuracy.min() >= 0.98 and kin.accuracy.max() - kin.accuracy.min() <= 0.01, kin
    base = solver_table(load_model("rk4_1step"), small, SOLVER_INDEPENDENCE_BAR[-1:])
    assert kin.nfe_per_batch.iloc[-1] < 0.6 * base.nfe_per_batch.iloc[-1], (kin, base)
