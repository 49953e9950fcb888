"""Model-order reduction, the numerical part (the MOR paper; LEADS.md, MOR section).

- `Gram`: the n x n Gram matrix X X^T of state (or nonlinearity) snapshots, accumulated in
  float64 while streaming batches, so 60,000 inputs x many steps fit in memory; its
  eigenvectors are the POD basis (left singular vectors of X), its eigenvalues the squared
  singular values (kept for the decay plot).
- Interpolation points for DEIM on a basis U (n x m): `deim` (the greedy rule: p1 = argmax
  |u1|, then the largest residual of each next basis vector interpolated at the points so
  far), `qdeim` (QR with column pivoting of U^T: a better-conditioned P^T U), and
  `odeim` (m + o points; the interpolation then uses a pseudo-inverse).
- `low_rank(W, C, k)`: W ~ P Q of rank k minimising sum ||W x - P Q x||^2 over inputs x with
  second moment C (C = I: the truncated SVD of W).
- `interpolation(U, points)`: the operator U (P^T U)^+ that rebuilds f from its values at
  the points; `lstsq_interpolation(G, points)`: the same role filled by the least-squares
  fit over the snapshots themselves, G_{:,P} (G_{P,P})^+ with G their Gram matrix (the best
  linear estimate of f from f_P on the training data; equal to DEIM's when the snapshots
  span exactly m dimensions, better when they do not).
"""

from __future__ import annotations

import torch


class Gram:
    """Streams snapshot batches (rows are snapshots of an n-vector) into X^T X in float64."""

    def __init__(self, n: int):
        self.matrix = torch.zeros(n, n, dtype=torch.float64)
        self.count = 0

    def add(self, snapshots: torch.Tensor) -> None:
        s = snapshots.reshape(-1, self.matrix.shape[0]).double()
        self.matrix.addmm_(s.t(), s)
        self.count += s.shape[0]

    def basis(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(V_k: n x k orthonormal POD basis, singular values of the snapshot matrix, all n,
        descending)."""
        if not 1 <= k <= self.matrix.shape[0]:
            raise ValueError(f"the basis size must be in [1, {self.matrix.shape[0]}] (got {k})")
        values, vectors = torch.linalg.eigh(self.matrix)
        order = torch.argsort(values, descending=True)
        singular = values[order].clamp_min(0).sqrt()
        return vectors[:, order[:k]].contiguous(), singular


def deim(u: torch.Tensor) -> torch.Tensor:
    """DEIM points (indices into the n rows) of a basis u (n x m), in the greedy order."""
    u = u.double()
    points = [int(torch.argmax(u[:, 0].abs()))]
    for j in range(1, u.shape[1]):
        p = torch.tensor(points)
        c = torch.linalg.solve(u[p, :j], u[p, j])
        residual = u[:, j] - u[:, :j] @ c
        points.append(int(torch.argmax(residual.abs())))
    return torch.tensor(points)


def qdeim(u: torch.Tensor) -> torch.Tensor:
    """Q-DEIM points: the first m pivots of a column-pivoted QR of u^T (Drmac & Gugercin)."""
    import scipy.linalg

    _, _, piv = scipy.linalg.qr(u.double().t().numpy(), pivoting=True, mode="economic")
    return torch.from_numpy(piv[: u.shape[1]].copy()).long()


def odeim(u: torch.Tensor, extra: int) -> torch.Tensor:
    """Q-DEIM's m points plus `extra` more (oversampled DEIM): each time the row most aligned
    with the weakest direction of P^T u (its smallest right singular vector), the first-order
    choice for raising the smallest singular value, so the pseudo-inverse is better
    conditioned (Peherstorfer, Drmac & Gugercin 2020)."""
    points = qdeim(u).tolist()
    u = u.double()
    for _ in range(min(extra, u.shape[0] - len(points))):
        _, _, vh = torch.linalg.svd(u[points], full_matrices=False)
        score = (u @ vh[-1]).abs()
        score[points] = -1.0
        points.append(int(torch.argmax(score)))
    return torch.tensor(points)


def interpolation(u: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """U (P^T U)^+ (n x len(points)): f ~ this @ f[points] for f near the span of U."""
    u = u.double()
    return u @ torch.linalg.pinv(u[points])


def lstsq_interpolation(gram: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """argmin_L sum ||f - L f_P||^2 over the snapshots f (n x len(points)) from their Gram
    matrix G = sum f f^T: L = G[:, P] G[P, P]^+. Needs no basis, only the Gram."""
    g = gram.double()
    cols = g[:, points]
    return cols @ torch.linalg.pinv(cols[points], hermitian=True)


def low_rank(w: torch.Tensor, c: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P: rows x k orthonormal, Q = P^T W: k x cols, singular values of W C^1/2, all min(shape),
    descending): P spans the top k eigenvectors of W C W^T, so P Q is the rank-k map closest to W
    on inputs with second moment C (C None: the identity, P Q the truncated SVD of W)."""
    w = w.double()
    values, vectors = torch.linalg.eigh(w @ w.t() if c is None else w @ c.double() @ w.t())
    order = torch.argsort(values, descending=True)
    p = vectors[:, order[:k]].contiguous()
    return p, p.t() @ w, values[order][: min(w.shape)].clamp_min(0).sqrt()
