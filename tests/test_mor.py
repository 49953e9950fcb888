"""Model-order reduction numerics: streamed POD, DEIM against a hand computation, Q-DEIM's
error bound, oversampling, data-weighted low rank."""

import math

import pytest
import torch

from cfctool.mor import Gram, deim, interpolation, low_rank, lstsq_interpolation, odeim, qdeim


def test_streamed_gram_gives_the_svd_basis():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 12, generator=g) @ torch.diag(torch.logspace(0, -3, 12))  # decaying spectrum
    gram = Gram(12)
    for chunk in x.split(64):
        gram.add(chunk)
    v, s = gram.basis(4)
    _, s_ref, vh = torch.linalg.svd(x.double(), full_matrices=False)
    assert torch.allclose(s, s_ref, rtol=1e-6) and gram.count == 500
    # the same subspace (signs may differ): projector difference
    assert (v @ v.t() - vh[:4].t() @ vh[:4]).abs().max() < 1e-8
    with pytest.raises(ValueError, match=r"\[1, 12\]"):
        gram.basis(13)


def test_deim_points_on_a_hand_made_basis():
    u = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, -0.5], [0.2, 0.1]], dtype=torch.float64)
    # by hand: p1 = argmax |u1| = 1; c = u[1,1] / u[1,0] = 0.25; r = u2 - 0.25 u1 =
    # [0.875, 0, -0.575, 0.05] -> p2 = 0
    assert deim(u).tolist() == [1, 0]
    f = u @ torch.tensor([2.0, -1.0], dtype=torch.float64)  # in the span: rebuilt exactly
    assert torch.allclose(interpolation(u, deim(u)) @ f[deim(u)], f)


def test_qdeim_error_bound_holds_on_random_data():
    g = torch.Generator().manual_seed(1)
    n, m = 200, 12
    u, _ = torch.linalg.qr(torch.randn(n, m, generator=g, dtype=torch.float64))
    p = qdeim(u)
    assert len(set(p.tolist())) == m
    constant = torch.linalg.norm(torch.linalg.inv(u[p]), 2).item()
    assert constant <= math.sqrt(n - m + 1) * math.sqrt(4 ** m + 6 * m - 1) / 3  # Drmac & Gugercin, Thm 2.1
    for _ in range(5):
        f = torch.randn(n, generator=g, dtype=torch.float64)
        err = torch.linalg.norm(f - interpolation(u, p) @ f[p])
        best = torch.linalg.norm(f - u @ (u.t() @ f))
        assert err <= constant * best + 1e-9


def test_oversampling_improves_the_conditioning():
    g = torch.Generator().manual_seed(2)
    u, _ = torch.linalg.qr(torch.randn(300, 20, generator=g, dtype=torch.float64))
    base = torch.linalg.norm(torch.linalg.pinv(u[qdeim(u)]), 2)
    more = odeim(u, 5)
    assert len(more) == 25 and len(set(more.tolist())) == 25
    assert torch.linalg.norm(torch.linalg.pinv(u[more]), 2) < base


def test_lstsq_interpolation_is_deim_on_an_exact_span_and_better_off_it():
    g = torch.Generator().manual_seed(3)
    n, m = 60, 6
    u, _ = torch.linalg.qr(torch.randn(n, m, generator=g, dtype=torch.float64))
    snaps = torch.randn(400, m, generator=g, dtype=torch.float64) @ u.t()  # exactly m-dimensional
    gram = Gram(n)
    gram.add(snaps)
    p = qdeim(u)
    assert torch.allclose(lstsq_interpolation(gram.matrix, p), interpolation(u, p), atol=1e-8)
    # off the span (a decaying tail), the least-squares rebuild has the smaller training error
    tail = torch.randn(400, n, generator=g, dtype=torch.float64) * 0.2
    noisy = snaps + tail
    gram = Gram(n)
    gram.add(noisy)
    basis, _ = gram.basis(m)
    p = qdeim(basis)
    err = lambda op: torch.linalg.norm(noisy.t() - op @ noisy.t()[p]).item()  # noqa: E731
    assert err(lstsq_interpolation(gram.matrix, p)) < 0.95 * err(interpolation(basis, p))


def test_low_rank_is_the_truncated_svd_and_its_weighted_form_fits_the_data_better():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(30, 20, generator=g, dtype=torch.float64)
    p, q, s = low_rank(w, None, 4)
    u, sv, vh = torch.linalg.svd(w)
    assert torch.allclose(p @ q, u[:, :4] @ torch.diag(sv[:4]) @ vh[:4], atol=1e-10)
    assert torch.allclose(s, sv, atol=1e-10) and torch.allclose(p.t() @ p, torch.eye(4, dtype=torch.float64))
    # inputs living mostly in 3 directions: the weighted rank-3 map is exact there, the SVD's is not
    basis = torch.linalg.qr(torch.randn(20, 3, generator=g, dtype=torch.float64))[0]
    x = torch.randn(500, 3, generator=g, dtype=torch.float64) @ basis.t()
    c = x.t() @ x / len(x)
    err = lambda pq: torch.linalg.norm(x @ (w - pq[0] @ pq[1]).t()).item()  # noqa: E731
    assert err(low_rank(w, c, 3)[:2]) <= 1e-8 * torch.linalg.norm(x @ w.t()).item() < err(low_rank(w, None, 3)[:2])
