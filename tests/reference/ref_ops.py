"""PyTorch float64 references for the CPU ops (everything but the mel front end).

Usage: ref_ops.py IN.safetensors OUT.safetensors

IN holds every case of one test run: tensor "<case>/<field>" (float32 inputs as our kernels see
them, int32 index tables), __metadata__["cases"], a JSON object {case: {"op": ..., params}}, and
__metadata__["ops"], the ops kernels/op_list.h gives a torch reference (each must be in OPS).
OUT gets "<case>/<field>" in float64: outputs and the pure gradients (d loss / d input for the
upstream gradient "dy" of the case; parameter gradients are not added to any pre-filled buffer,
the C++ side does the accumulation check). Everything is computed by torch autograd in float64
on the exact float32 input values, so the only difference to our kernels is their float32
arithmetic.

Exits non-zero with a message when a case is malformed or when a torch self-check fails (our
"same" padding split must be torch's padding="same").
"""
import json
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import st

torch.set_default_dtype(torch.float64)
# padding="same" with an even kernel warns that it pads a copy; that is what we check.
warnings.filterwarnings("ignore", message=".*padding='same'.*")


class CaseError(Exception):
    pass


def t64(tensors, case, field, grad=False):
    key = f"{case}/{field}"
    if key not in tensors:
        raise CaseError(f"input tensor '{key}' missing (the C++ test must write it)")
    t = torch.from_numpy(tensors[key].astype(np.float64))
    return t.requires_grad_(grad)


def conv1d(tin, case, p):
    x = t64(tin, case, "x", True)
    w = t64(tin, case, "w", True)
    b = t64(tin, case, "b", True)
    dy = t64(tin, case, "dy")
    pl, pr = int(p["pad_left"]), int(p["pad_right"])
    y = F.conv1d(F.pad(x, (pl, pr)), w, b, padding=0)
    if tuple(y.shape) != tuple(dy.shape):
        raise CaseError(f"{case}: torch output shape {tuple(y.shape)} != dy shape {tuple(dy.shape)}")
    y.backward(dy)
    out = {"y": y.detach(), "dx": x.grad, "dw": w.grad, "db": b.grad}
    if p.get("padding") == "same":
        # Our "same" is (K-1)//2 on the left and the rest on the right; it must be torch's.
        y_same = F.conv1d(x.detach(), w.detach(), b.detach(), padding="same")
        scale = max(float(y.detach().abs().max()), 1e-300)
        diff = float((y_same - y.detach()).abs().max()) if y_same.shape == y.shape else float("inf")
        if diff > 1e-12 * scale:
            raise CaseError(f"{case}: torch padding='same' differs from F.pad(x, ({pl}, {pr})) "
                            f"by {diff} (K={w.shape[2]}): kernels/conv1d_cpu.h's split is wrong")
    return out


def maxpool(tin, case, p):
    x = t64(tin, case, "x", True)
    dy = t64(tin, case, "dy")
    win = int(p["window"])
    y = F.max_pool1d(x.unsqueeze(0), win).squeeze(0)
    y.backward(dy)
    # The header's contract (first maximum of a window wins), independently of torch, so a
    # disagreement between torch and the contract is reported as such.
    xn = x.detach().numpy()
    rows, tin_ = xn.shape
    tout = tin_ // win
    first = np.zeros_like(xn)
    win_view = xn[:, :tout * win].reshape(rows, tout, win)
    arg = np.argmax(win_view, axis=2)  # numpy argmax returns the first maximum
    r_idx = np.repeat(np.arange(rows), tout)
    t_idx = np.tile(np.arange(tout), rows)
    first[r_idx, t_idx * win + arg.reshape(-1)] = dy.numpy().reshape(-1)
    return {"y": y.detach(), "dx": x.grad, "dx_first_wins": torch.from_numpy(first)}


def relu(tin, case, p):
    x = t64(tin, case, "x", True)
    dy = t64(tin, case, "dy")
    y = torch.relu(x)
    y.backward(dy)
    return {"y": y.detach(), "dx": x.grad}


def mean_time(tin, case, p):
    x = t64(tin, case, "x", True)
    dy = t64(tin, case, "dy")
    y = x.mean(dim=1)
    y.backward(dy)
    return {"y": y.detach(), "dx": x.grad}


def linear(tin, case, p):
    x = t64(tin, case, "x", True)
    w = t64(tin, case, "w", True)
    b = t64(tin, case, "b", True)
    dy = t64(tin, case, "dy")
    y = F.linear(x, w, b)
    y.backward(dy)
    return {"y": y.detach(), "dx": x.grad, "dw": w.grad, "db": b.grad}


def l2norm(tin, case, p):
    x = t64(tin, case, "x", True)
    dy = t64(tin, case, "dy")
    y = F.normalize(x, p=2.0, dim=1, eps=float(p["eps"]))
    y.backward(dy)
    return {"y": y.detach(), "dx": x.grad}


def triplet(tin, case, p):
    emb = t64(tin, case, "emb", True)
    key = f"{case}/triplets"
    if key not in tin:
        raise CaseError(f"input tensor '{key}' missing")
    idx = torch.from_numpy(tin[key].astype(np.int64))
    eps = float(p["eps"])

    def dist(a, b):
        return torch.sqrt(torch.clamp(2 * (1 - (a * b).sum(-1)), min=eps))

    loss_fn = torch.nn.TripletMarginWithDistanceLoss(
        distance_function=dist, margin=float(p["margin"]), swap=bool(p["swap"]))
    a, pos, neg = emb[idx[:, 0]], emb[idx[:, 1]], emb[idx[:, 2]]
    loss = loss_fn(a, pos, neg)
    loss.backward()
    with torch.no_grad():
        dn = dist(a, neg)
        if p["swap"]:
            dn = torch.min(dn, dist(pos, neg))
        # Triplets that carry gradient: clamp_min passes it at exactly 0 too.
        active = int((dist(a, pos) - dn + float(p["margin"]) >= 0).sum())
    return {"loss": loss.detach().reshape(1), "active": torch.tensor([float(active)]),
            "demb": emb.grad}


def contrastive(tin, case, p):
    """SupCon over graph positives (kernels/contrastive_loss_cpu.h), written with torch ops."""
    emb = t64(tin, case, "emb", True)
    key = f"{case}/hops"
    if key not in tin:
        raise CaseError(f"input tensor '{key}' missing")
    hops = torch.from_numpy(tin[key].astype(np.int64))
    n = emb.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    pos = (hops <= int(p["pos_hops"])) & ~eye
    support = (pos | (hops >= int(p["neg_hops"]))) & ~eye
    s = emb @ emb.T / float(p["tau"])
    lse = torch.logsumexp(s.masked_fill(~support, float("-inf")), dim=1)
    n_pos = pos.sum(1)
    valid = n_pos > 0
    per_row = lse - (s * pos).sum(1) / n_pos.clamp(min=1)
    loss = per_row[valid].mean() if bool(valid.any()) else (emb * 0).sum()
    loss.backward()
    return {"loss": loss.detach().reshape(1), "valid": torch.tensor([float(valid.sum())]), "demb": emb.grad}


def batchnorm(tin, case, p):
    x = t64(tin, case, "x", True)
    gamma = t64(tin, case, "gamma", True)
    beta = t64(tin, case, "beta", True)
    rm = t64(tin, case, "running_mean").clone()
    rv = t64(tin, case, "running_var").clone()
    dy = t64(tin, case, "dy")
    eps, momentum = float(p["eps"]), float(p["momentum"])
    y_eval = F.batch_norm(x.detach(), rm.clone(), rv.clone(), gamma.detach(), beta.detach(), training=False, eps=eps)
    y = F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=momentum, eps=eps)
    y.backward(dy)
    return {"y": y.detach(), "running_mean": rm, "running_var": rv, "dx": x.grad, "dgamma": gamma.grad,
            "dbeta": beta.grad, "y_eval": y_eval}


def band_norm(tin, case, p):
    x = t64(tin, case, "x")
    mean = t64(tin, case, "mean")
    std = t64(tin, case, "std")
    return {"y": (x - mean[None, :, None]) / std[None, :, None]}


def adam(tin, case, p):
    param = t64(tin, case, "p0").clone().requires_grad_(True)
    grads = t64(tin, case, "grads")
    kw = dict(lr=float(p["lr"]), betas=(float(p["beta1"]), float(p["beta2"])),
              eps=float(p["eps"]), weight_decay=float(p["weight_decay"]))
    opt = (torch.optim.AdamW if p["decoupled"] else torch.optim.Adam)([param], **kw)
    steps = []
    for g in grads:
        param.grad = g.clone()
        opt.step()
        steps.append(param.detach().clone())
    state = opt.state[param]
    return {"p_steps": torch.stack(steps), "m": state["exp_avg"].clone(),
            "v": state["exp_avg_sq"].clone()}


def clip_grad_norm(tin, case, p):
    g = t64(tin, case, "g")
    param = torch.zeros_like(g, requires_grad=True)
    param.grad = g.clone()
    norm = torch.nn.utils.clip_grad_norm_([param], max_norm=float(p["max_norm"]))
    return {"g": param.grad.clone(), "norm": norm.detach().reshape(1)}


OPS = {"conv1d": conv1d, "maxpool": maxpool, "relu": relu, "mean_time": mean_time,
       "linear": linear, "l2norm": l2norm, "triplet": triplet, "adam": adam, "clip_grad_norm": clip_grad_norm,
       "contrastive": contrastive, "batchnorm": batchnorm, "band_norm": band_norm}


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: ref_ops.py IN.safetensors OUT.safetensors")
    tin, meta = st.load(sys.argv[1])
    if "cases" not in meta:
        sys.exit(f"{sys.argv[1]}: __metadata__ has no 'cases' entry (JSON {{case: params}})")
    cases = json.loads(meta["cases"])
    # The ops whose reference is torch in kernels/op_list.h: every one must be known here.
    missing = sorted(set(json.loads(meta.get("ops", "[]"))) - set(OPS))
    if missing:
        sys.exit(f"{sys.argv[1]}: kernels/op_list.h names ops with a torch reference that ref_ops.py "
                 f"does not compute: {missing} (add a function and its OPS entry)")
    out = {}
    for case, params in cases.items():
        op = params.get("op")
        if op not in OPS:
            sys.exit(f"{sys.argv[1]}: case '{case}' has unknown op '{op}' (known: {sorted(OPS)})")
        try:
            res = OPS[op](tin, case, params)
        except CaseError as e:
            sys.exit(f"{sys.argv[1]}: {e}")
        for field, t in res.items():
            out[f"{case}/{field}"] = t.detach().numpy().astype(np.float64)
    st.save(sys.argv[2], out, {"torch": torch.__version__})


if __name__ == "__main__":
    main()
