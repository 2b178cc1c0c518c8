"""Loop-by-loop numpy rendering of the LIF scan: the independent reference for tests and docs.

It mirrors the original CUDA kernels of SNN-MLP (huawei-noah/Efficient-AI-Backbones,
``snnmlp_pytorch/models/snn_cuda.py``) element by element, in float64:

* forward, per window of ``k`` positions along ``axis``: the membrane ``o`` starts at 0, then
  ``u = tau*o + x; fire = u > vth; out = fire ? u : vth; o = fire ? 0 : u``; positions after the last whole
  window are copied (and marked as fired, so they take no part in the Vth gradient);
* backward, ``fire`` held constant: ``dx`` by the reverse recurrence
  ``gu[j] = g[j]*fire[j] + gu[j+1]*tau*(1 - fire[j])``, ``dtau`` by the forward-mode sum of the original
  (``t[j] = t[j-1]*tau*(1 - fire[j-1]) + o[j]``, ``dtau = sum g*fire*t``), ``dvth = sum g*(1 - fire)``.

Deliberately slow: plain Python loops, no vectorisation, so that it shares no code path with the back-ends
it checks. Keep inputs small.
"""
import numpy as np

__all__ = ["lif_forward_np", "lif_backward_np", "resolve_window"]


def resolve_window(window, length):
    """Effective window along an axis of ``length``: ``None`` for the identity, else a positive int.

    ``-1`` is the identity, ``0`` means one window over the whole axis, a window longer than the axis holds
    no whole window and is therefore the identity too.
    """
    if window == -1:
        return None
    if window < -1:
        raise ValueError(f"window must be -1 (off), 0 (whole axis) or positive, got {window}")
    k = length if window == 0 else window
    if k == 0 or k > length:
        return None
    return k


def _check(x, axis):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D NCHW, got shape {x.shape}")
    if axis not in (2, 3):
        raise ValueError(f"axis must be 2 (H) or 3 (W), got {axis}")
    return x


def _scalar(v):
    return float(np.asarray(v, dtype=np.float64).reshape(-1)[0])


def _lines(x, axis):
    """Yield index functions for every line (n, c, other) along ``axis``: pos -> full 4-D index."""
    n_, c_, h_, w_ = x.shape
    other = w_ if axis == 2 else h_
    for n in range(n_):
        for c in range(c_):
            for r in range(other):
                if axis == 2:
                    yield lambda p, n=n, c=c, r=r: (n, c, p, r)
                else:
                    yield lambda p, n=n, c=c, r=r: (n, c, r, p)


def _forward_state(x, tau, vth, k, axis):
    """Forward pass keeping what the original kernel kept: out, the fire flags and the membrane ``o``."""
    length = x.shape[axis]
    whole = (length // k) * k
    out = np.zeros(x.shape, np.float64)
    fire = np.ones(x.shape, bool)  # tail positions count as fired, as in the original
    membrane = np.zeros(x.shape, np.float64)
    for at in _lines(x, axis):
        for start in range(0, whole, k):
            o = 0.0
            for j in range(k):
                idx = at(start + j)
                membrane[idx] = o
                u = tau * o + float(x[idx])
                fire[idx] = u > vth
                out[idx] = u if fire[idx] else vth
                o = 0.0 if fire[idx] else u
        for p in range(whole, length):
            out[at(p)] = float(x[at(p)])
    return out, fire, membrane


def lif_forward_np(x, tau, vth, window, axis):
    """LIF scan of the 4-D ``x`` along ``axis`` (2 = H, 3 = W); returns float64 of the same shape."""
    x = _check(x, axis)
    k = resolve_window(window, x.shape[axis])
    if k is None:
        return x.astype(np.float64)
    return _forward_state(x, _scalar(tau), _scalar(vth), k, axis)[0]


def lif_backward_np(x, tau, vth, window, axis, grad_out):
    """Gradients of ``sum(grad_out * lif(x))``: ``(dx, dtau, dvth)``, float64, dtau/dvth of shape (1,)."""
    x = _check(x, axis)
    grad_out = np.asarray(grad_out, np.float64)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out shape {grad_out.shape} differs from x shape {x.shape}")
    k = resolve_window(window, x.shape[axis])
    if k is None:
        return grad_out.copy(), np.zeros(1), np.zeros(1)
    tau = _scalar(tau)
    _, fire, membrane = _forward_state(x, tau, _scalar(vth), k, axis)
    length = x.shape[axis]
    whole = (length // k) * k
    dx = np.zeros(x.shape, np.float64)
    dtau = 0.0
    dvth = 0.0
    for at in _lines(x, axis):
        for start in range(0, whole, k):
            # Forward-mode d u[j] / d tau, as the original accumulates it.
            du_dtau = 0.0
            for j in range(k):
                idx = at(start + j)
                if j > 0:
                    du_dtau = du_dtau * tau * (1.0 - fire[at(start + j - 1)]) + membrane[idx]
                dtau += grad_out[idx] * fire[idx] * du_dtau
                dvth += grad_out[idx] * (1.0 - fire[idx])
            # Reverse recurrence for d x.
            carry = 0.0
            for j in reversed(range(k)):
                idx = at(start + j)
                carry = grad_out[idx] * fire[idx] + carry * tau * (1.0 - fire[idx])
                dx[idx] = carry
        for p in range(whole, length):
            dx[at(p)] = grad_out[at(p)]
    return dx, np.array([dtau]), np.array([dvth])
