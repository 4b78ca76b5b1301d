"""PyTorch float64 reference for the whole model (tests/test_reference_model.cpp).

Usage: ref_model.py OUT.safetensors --case NAME CHECKPOINT AUDIO [--case ...]

CHECKPOINT is a melgraph checkpoint (engine/checkpoint.h): parameters conv.{i}.weight
[Cout, Cin, K], conv.{i}.bias, (head_norm.weight, head_norm.bias,) linear.weight [E, C],
linear.bias and the model's state (input statistics, batch norm's running statistics) as
float32, and the run's TOML config in __metadata__["config"]; the model, loss and optimizer
settings all come from that config. AUDIO holds "audio" (float32 [B, S]) and __metadata__
{"n_triplets", "steps"}: with the triplet loss B = 3 * n_triplets in the offline layout
(anchors, positives, negatives); with the contrastive loss B = 2 * n_triplets (anchors, then
their positives) and "hops" (int32 [B, B], the graph distances between the rows' items). With
model.dropout > 0 also "dropout_mask" (float32 [steps, B, k C_last], the engine's mask of each
step: 0 or 1 / (1 - p) in float32).

The model, loss and optimizer are mg_torch.py's (the one PyTorch definition of the model, which
bench/compare/compare.py uses too), built in torch float64 from the exact float32 parameters
and samples; the net replays the engine's dropout mask of each step (its forward's keep
argument: x * keep / (1 - p), F.dropout's formula), and the optimizer steps after
clip_grad_norm_.
For s in 0 .. steps-1, forward pass s runs at the parameters after s optimizer steps, on the
same batch. OUT gets, in float64:
  NAME/logmel                       [B, n_mels, F]  the front end's output
  NAME/fwd{s}/pre.{i}               [B, C_i, Tc_i]  conv outputs before ReLU (for the C++
                                                   side to check that no ReLU / max-pool
                                                   decision flips between float32 and float64)
  NAME/fwd{s}/emb                   [B, E]
  NAME/eval/emb                     [B, E or k C]   the item embedding (embed()) in eval mode (no
                                                   dropout, running statistics), initial parameters
  NAME/fwd{s}/loss, /active         [1]             mean loss, triplets with a positive hinge
                                                   (contrastive: rows with a positive)
  NAME/fwd{s}/grad.<param>                          d loss / d param (before clipping)
  NAME/step{s+1}/grad_norm          [1]             global gradient norm before clipping
  NAME/step{s+1}/grad_clipped.<param>               the gradient the optimizer used
  NAME/step{s+1}/param.<param>                      parameters after optimizer step s+1

Exits non-zero, naming the case, when a triplet sits within 1e-4 of a kink of the loss (hinge
at 0, or the swap's min(d(a,n), d(p,n)) at a tie): there float32 and float64 may legitimately
take different branches, so the case's seeds must change instead of the tolerance.
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mg_torch  # noqa: E402
import st  # noqa: E402

# The loss's kinks must be at least this far away (in distance units, |d| <= 2) for the
# float32 engine (errors ~1e-6 there) and float64 torch to be on the same side of each.
KINK_MARGIN = 1e-4


class CaseError(Exception):
    pass


def read_audio(audio_path, contrastive):
    """(audio float32 [B, S], n_triplets, steps, dropout_mask or None, hops or None) of an
    AUDIO file."""
    a, meta = st.load(audio_path)
    audio = a["audio"]
    if audio.dtype != np.float32 or audio.ndim != 2:
        raise CaseError(f"{audio_path}: 'audio' must be float32 [B, S], got {audio.dtype} {audio.shape}")
    n, steps = int(meta["n_triplets"]), int(meta["steps"])
    rows = (2 if contrastive else 3) * n
    if audio.shape[0] != rows:
        raise CaseError(f"{audio_path}: batch {audio.shape[0]} is not {rows} rows for {n} anchors")
    hops = a.get("hops")
    if contrastive and (hops is None or hops.shape != (rows, rows)):
        raise CaseError(f"{audio_path}: the contrastive loss needs 'hops' [{rows}, {rows}]")
    return audio, n, steps, a.get("dropout_mask"), hops


def dropout_keep(mask, p_drop, shape, audio_path):
    """The keep pattern (bool [steps, B, k C]) of the engine's masks, after checking that they
    are masks of dropout p_drop; None without dropout."""
    import torch

    if p_drop <= 0:
        return None
    if mask is None:
        raise CaseError(f"{audio_path}: model.dropout = {p_drop} but no 'dropout_mask'")
    if mask.shape != shape:
        raise CaseError(f"{audio_path}: dropout_mask shape {mask.shape}, expected {shape}")
    scale = np.float32(1.0 / (1.0 - p_drop))
    if not np.all((mask == 0) | (mask == scale)):
        raise CaseError(f"{audio_path}: dropout_mask holds values other than 0 and {scale}")
    return torch.from_numpy(mask != 0)


def check_kinks(name, s, anc, pos, neg, hinge, loss_cfg, dist):
    """CaseError unless every triplet of forward pass s is clear of the eps clamp, the hinge and,
    with swap, the min(d(a,n), d(p,n)) tie: there float32 and float64 may take different
    branches."""
    import torch

    eps = loss_cfg["eps"]
    sq = torch.cat([2 * (1 - (x * y).sum(-1)) for x, y in ((anc, pos), (anc, neg), (pos, neg))])
    if float(sq.min()) < 10 * eps:
        raise CaseError(f"{name}, forward {s}: a squared distance {float(sq.min())} is near the eps "
                        f"clamp ({eps}); change the case's seeds")
    if float(hinge.abs().min()) < KINK_MARGIN:
        raise CaseError(f"{name}, forward {s}: a hinge is {float(hinge.abs().min())} from 0 (< {KINK_MARGIN}); "
                        "float32 may take the other branch: change the case's seeds")
    if loss_cfg["swap"] and float((dist(anc, neg) - dist(pos, neg)).abs().min()) < KINK_MARGIN:
        raise CaseError(f"{name}, forward {s}: d(a,n) and d(p,n) tie within {KINK_MARGIN}; "
                        "change the case's seeds")


def forward_backward(name, s, net, logmel, keep, n, hops, cfg, out):
    """Training forward pass s (dropout pattern keep, or None), the loss over the n offline
    triplets (or, with hops, the contrastive loss over the batch) and its backward; records
    what the C++ side compares under NAME/fwd{s}."""
    import torch

    loss_cfg = cfg["loss"]
    dist = mg_torch.distance(loss_cfg["eps"])
    emb, pre = net(logmel, return_pre=True, keep=keep)
    f = f"{name}/fwd{s}"
    if hops is not None:  # the contrastive loss is smooth: no kinks to keep clear of
        loss, valid = mg_torch.contrastive_loss(emb, torch.from_numpy(hops.astype(np.int64)), cfg)
        loss.backward()
        print(f"{name} fwd{s}: contrastive loss {float(loss):.6f}, rows with a positive {valid}/{emb.shape[0]}, "
              f"min |pre-activation| {min(float(z.abs().min()) for z in pre):.3g}")
        out[f"{f}/active"] = torch.tensor([float(valid)])
        record_forward(f, net, emb, loss, pre, out)
        return
    anc, pos, neg = emb[:n], emb[n:2 * n], emb[2 * n:]
    loss = mg_torch.loss_fn(cfg)(anc, pos, neg)
    loss.backward()

    with torch.no_grad():
        d_neg = torch.minimum(dist(anc, neg), dist(pos, neg)) if loss_cfg["swap"] else dist(anc, neg)
        hinge = loss_cfg["margin"] + dist(anc, pos) - d_neg
        check_kinks(name, s, anc, pos, neg, hinge, loss_cfg, dist)
        print(f"{name} fwd{s}: loss {float(loss):.6f}, active {int((hinge > 0).sum())}/{n}, "
              f"min |hinge| {float(hinge.abs().min()):.3g}, "
              f"min |pre-activation| {min(float(z.abs().min()) for z in pre):.3g}")

    out[f"{f}/active"] = (hinge > 0).sum().double().reshape(1)
    record_forward(f, net, emb, loss, pre, out)


def record_forward(f, net, emb, loss, pre, out):
    out[f"{f}/emb"] = emb.detach()
    out[f"{f}/loss"] = loss.detach().reshape(1)
    for i, z in enumerate(pre):
        out[f"{f}/pre.{i}"] = z.detach()
    for k, p in net.named_parameters():
        out[f"{f}/grad.{k}"] = p.grad.detach().clone()


def optimizer_step(name, s, params, opt, clip, out):
    """Clips the gradients of params ({name: parameter}, the checkpoint's order) and takes
    optimizer step s + 1; records the norm, the clipped gradients and the new parameters under
    NAME/step{s+1}."""
    import torch

    tensors = list(params.values())
    g = f"{name}/step{s + 1}"
    if clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(tensors, clip)
    else:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in tensors]))
    out[f"{g}/grad_norm"] = norm.detach().reshape(1)
    print(f"{name} step{s + 1}: gradient norm {float(norm):.6g} (clip_norm {clip})")
    for k, p in params.items():
        out[f"{g}/grad_clipped.{k}"] = p.grad.detach().clone()
    opt.step()
    for k, p in params.items():
        out[f"{g}/param.{k}"] = p.detach().clone()
    if not all(math.isfinite(float(p.detach().abs().max())) for p in tensors):
        raise CaseError(f"{name}: non-finite parameters after step {s + 1}")


def run_case(name, ckpt_path, audio_path, out):
    import torch

    try:
        cfg, ckpt = mg_torch.load_checkpoint(ckpt_path)
    except ValueError as e:
        raise CaseError(str(e)) from e
    contrastive = cfg["loss"].get("name", "triplet") == "contrastive"
    audio, n, steps, mask, hops = read_audio(audio_path, contrastive)
    B, S = audio.shape

    # Front end (no parameters: computed once).
    tf = mg_torch.mel_transform(cfg)
    assert tf.mel_scale.fb.dtype == torch.float64
    with torch.no_grad():
        logmel = mg_torch.log_mel(tf, torch.from_numpy(audio.astype(np.float64)), cfg)
    mel_shape = (B, cfg["mel"]["n_mels"], 1 + S // cfg["mel"]["hop"])
    if tuple(logmel.shape) != mel_shape:
        raise CaseError(f"{name}: log-mel shape {tuple(logmel.shape)}, expected {mel_shape}")
    out[f"{name}/logmel"] = logmel

    net = mg_torch.make_net(cfg).double()
    mg_torch.load_params(net, ckpt)
    named = dict(net.named_parameters())
    params = {k: named[k] for k in mg_torch.param_names(cfg)}
    p_drop = cfg["model"]["dropout"]
    keep = dropout_keep(mask, p_drop, (steps, B, net.linear.in_features), audio_path)
    if keep is not None:
        print(f"{name}: dropout {p_drop}, dropped fraction {float((~keep).double().mean()):.3f}")
    opt = mg_torch.make_optimizer(list(params.values()), cfg)

    net.eval()
    with torch.no_grad():
        out[f"{name}/eval/emb"] = net.embed(logmel)
    net.train()
    for s in range(steps):
        for p in params.values():
            p.grad = None
        forward_backward(name, s, net, logmel, None if keep is None else keep[s], n, hops, cfg, out)
        optimizer_step(name, s, params, opt, cfg["optim"]["clip_norm"], out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--case", nargs=3, action="append", required=True, metavar=("NAME", "CHECKPOINT", "AUDIO"))
    args = ap.parse_args()

    import torch
    import torchaudio

    # torchaudio builds its window and filterbank in the default dtype: make everything float64.
    torch.set_default_dtype(torch.float64)
    out = {}
    try:
        for name, ckpt, audio in args.case:
            run_case(name, ckpt, audio, out)
    except CaseError as e:
        sys.exit(f"ref_model.py: {e}")
    tensors = {k: np.ascontiguousarray(v.numpy(), dtype=np.float64) for k, v in out.items()}
    st.save(args.out, tensors, {"torch": torch.__version__, "torchaudio": torchaudio.__version__})


if __name__ == "__main__":
    main()
