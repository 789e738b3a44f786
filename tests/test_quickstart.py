"""Pieces of the quick-start job: the checkerboard's in-square fraction against hand-placed
points, the MLP's octave input encoding against its closed form, the eval table layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import datasets
import eval_lib
from models import mlp
from utils import ConfigError


def test_in_checkerboard_hand_placed_points():
    # cell (floor(x1 / 2), floor(x2 / 2)); inside iff the cell sum is even and |x| <= 4.
    inside = [(1.0, 1.0), (3.0, 3.0), (-3.0, -3.0), (3.0, -1.0), (-1.0, -1.0), (0.5, -3.5)]
    outside = [(-1.0, 1.0), (1.0, -1.0), (3.0, 1.0), (5.0, 1.0), (1.0, 4.5), (-4.5, -3.0)]
    assert datasets.in_checkerboard(np.array(inside)) == 1.0
    assert datasets.in_checkerboard(np.array(outside)) == 0.0
    assert datasets.in_checkerboard(np.array(inside[:3] + outside[:1])) == 0.75


def test_in_checkerboard_of_data_uniform_and_shifted_data():
    x = np.asarray(datasets.sample_toy("checkerboard", jax.random.PRNGKey(0), 20000))
    assert datasets.in_checkerboard(x) == 1.0
    assert datasets.in_checkerboard(x + np.array([2.0, 0.0])) == 0.0  # onto the gaps
    u = np.random.default_rng(0).uniform(-4, 4, (20000, 2))  # half the area is squares
    assert abs(datasets.in_checkerboard(u) - 0.5) < 4 * 0.5 / np.sqrt(len(u))
    with pytest.raises(ConfigError, match="shape"):
        datasets.in_checkerboard(np.zeros((3, 3)))


def test_octave_encoding_closed_form():
    x = jnp.array([[0.25, -0.5], [1.0, 0.125]])
    enc = np.asarray(mlp.octave_encoding(x, 3))
    assert enc.shape == (2, 2 * (1 + 2 * 3))
    freqs = np.pi * np.array([1.0, 2.0, 4.0])
    xs = np.asarray(x)
    args = (xs[:, :, None] * freqs).reshape(2, -1)  # [x1 f0, x1 f1, x1 f2, x2 f0, ...]
    np.testing.assert_allclose(enc[:, :2], xs)
    np.testing.assert_allclose(enc[:, 2:8], np.sin(args), atol=1e-6)
    np.testing.assert_allclose(enc[:, 8:], np.cos(args), atol=1e-6)
    assert enc[0, 2] == pytest.approx(np.sqrt(0.5))  # sin(pi / 4)


def test_score_mlp_with_octaves_and_bad_value():
    x, labels = jnp.ones((3, 2)), jnp.full((3,), 10.0)
    net = mlp.ScoreMLP(nf=16, num_res_blocks=1, embedding_type="positional", input_octaves=2)
    variables = net.init(jax.random.PRNGKey(0), x, labels)
    assert variables["params"]["Dense_2"]["kernel"].shape == (2 * 5, 16)  # input layer
    assert net.apply(variables, x, labels).shape == (3, 2)
    with pytest.raises(ConfigError, match="model.input_octaves"):
        mlp.ScoreMLP(nf=16, input_octaves=-1).init(jax.random.PRNGKey(0), x, labels)


def test_results_table_layout():
    toy = eval_lib.results_table({"step": 4000, "energy_distance": 0.0012345678,
                                  "in_squares": 0.975, "note": None})
    assert toy.splitlines() == [
        "| metric          |     value |",
        "|:----------------|----------:|",
        "| step            |      4000 |",
        "| energy_distance | 0.0012346 |",
        "| in_squares      |     0.975 |",
        "| note            |         - |",
    ]
    sweep = eval_lib.results_table({"results": [{"step": 5, "fid": 12.5},
                                                {"step": 10, "fid": 9.0, "bpd": 3.25}]})
    assert sweep.splitlines() == [
        "| step |  fid |  bpd |",
        "|:-----|-----:|-----:|",
        "| 5    | 12.5 |    - |",
        "| 10   |    9 | 3.25 |",
    ]
