"""PyTorch float64 reference for the whole model (tests/test_reference_model.cpp).

Usage: ref_model.py OUT.safetensors --case NAME CHECKPOINT AUDIO [--case ...]

CHECKPOINT is a melgraph checkpoint (engine/checkpoint.h): parameters conv.{i}.weight
[Cout, Cin, K], conv.{i}.bias, linear.weight [E, C], linear.bias as float32, and the run's
TOML config in __metadata__["config"]; the model, loss and optimizer settings all come from
that config. AUDIO holds "audio" (float32 [B, S], B = 3 * n_triplets in the offline layout:
anchors, positives, negatives) and __metadata__ {"n_triplets", "steps"}; with model.dropout > 0
also "dropout_mask" (float32 [steps, B, k C_last], the engine's mask of each step: 0 or
1 / (1 - p) in float32).

The same model is built in torch float64 from the exact float32 parameters and samples:
torchaudio MelSpectrogram -> log(mel + log_eps) -> [Conv1d -> ReLU -> MaxPool1d (not after the
last stage)] -> global pooling over time (model.pooling: x.mean(-1); cat([x.mean(-1),
x.amax(-1)], 1); cat([x.mean(-1), x.amax(-1), x.norm(dim=-1)], 1)) -> dropout with the
engine's keep pattern, x * keep / (1 - p) (F.dropout's formula) -> Linear -> F.normalize, with
nn.TripletMarginWithDistanceLoss(distance sqrt(clamp(2 (1 - x.y), eps))) and torch.optim
Adam / AdamW after clip_grad_norm_. For s in 0 .. steps-1, forward pass s runs at the
parameters after s optimizer steps, on the same batch. OUT gets, in float64:
  NAME/logmel                       [B, n_mels, F]  the front end's output
  NAME/fwd{s}/pre.{i}               [B, C_i, Tc_i]  conv outputs before ReLU (for the C++
                                                   side to check that no ReLU / max-pool
                                                   decision flips between float32 and float64)
  NAME/fwd{s}/emb                   [B, E]
  NAME/eval/emb                     [B, E]          eval mode (no dropout), initial parameters
  NAME/fwd{s}/loss, /active         [1]             mean loss, triplets with a positive hinge
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
import tomllib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

# The loss's kinks must be at least this far away (in distance units, |d| <= 2) for the
# float32 engine (errors ~1e-6 there) and float64 torch to be on the same side of each.
KINK_MARGIN = 1e-4


class CaseError(Exception):
    pass


def param_names(n_stages):
    names = []
    for i in range(n_stages):
        names += [f"conv.{i}.weight", f"conv.{i}.bias"]
    return names + ["linear.weight", "linear.bias"]


def run_case(name, ckpt_path, audio_path, out):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torchaudio

    ckpt, meta = st.load(ckpt_path)
    if meta.get("format") != "melgraph-checkpoint":
        raise CaseError(f"{ckpt_path}: not a melgraph checkpoint (metadata 'format' is {meta.get('format')!r})")
    cfg = tomllib.loads(meta["config"])
    mel_cfg, model_cfg, loss_cfg, optim_cfg = cfg["mel"], cfg["model"], cfg["loss"], cfg["optim"]
    sr = cfg["audio"]["sample_rate"]

    a, ameta = st.load(audio_path)
    audio = a["audio"]
    if audio.dtype != np.float32 or audio.ndim != 2:
        raise CaseError(f"{audio_path}: 'audio' must be float32 [B, S], got {audio.dtype} {audio.shape}")
    n = int(ameta["n_triplets"])
    steps = int(ameta["steps"])
    B, S = audio.shape
    if B != 3 * n:
        raise CaseError(f"{audio_path}: batch {B} is not 3 * n_triplets = {3 * n}")

    channels = model_cfg["channels"]
    pooling, p_drop = model_cfg["pooling"], model_cfg["dropout"]
    n_feat = {"mean": 1, "mean_max": 2, "mean_max_l2": 3}[pooling]
    keep = None  # [steps, B, k C_last] bool
    if p_drop > 0:
        if "dropout_mask" not in a:
            raise CaseError(f"{audio_path}: model.dropout = {p_drop} but no 'dropout_mask'")
        m = a["dropout_mask"]
        if m.shape != (steps, B, n_feat * channels[-1]):
            raise CaseError(f"{audio_path}: dropout_mask shape {m.shape}, expected {(steps, B, n_feat * channels[-1])}")
        scale = np.float32(1.0 / (1.0 - p_drop))
        if not np.all((m == 0) | (m == scale)):
            raise CaseError(f"{audio_path}: dropout_mask holds values other than 0 and {scale}")
        keep = torch.from_numpy(m != 0)
        print(f"{name}: dropout {p_drop}, dropped fraction {float((m == 0).mean()):.3f}")
    names = param_names(len(channels))
    if sorted(ckpt) != sorted(names):
        raise CaseError(f"{ckpt_path}: tensors {sorted(ckpt)}, expected {sorted(names)}")
    P = {k: torch.from_numpy(ckpt[k].astype(np.float64)).requires_grad_(True) for k in names}

    # Front end (no parameters: computed once).
    hop, n_fft = mel_cfg["hop"], mel_cfg["n_fft"]
    tf = torchaudio.transforms.MelSpectrogram(
        sample_rate=sr, n_fft=n_fft, win_length=n_fft, hop_length=hop, f_min=mel_cfg["f_min"],
        f_max=mel_cfg["f_max"] if mel_cfg["f_max"] > 0 else None, pad=0, n_mels=mel_cfg["n_mels"],
        window_fn=torch.hann_window, power=mel_cfg["power"], normalized=False, center=True,
        pad_mode="reflect", onesided=True, norm=None if mel_cfg["norm"] == "none" else mel_cfg["norm"],
        mel_scale=mel_cfg["mel_scale"])
    assert tf.mel_scale.fb.dtype == torch.float64
    with torch.no_grad():
        logmel = torch.log(tf(torch.from_numpy(audio.astype(np.float64))) + mel_cfg["log_eps"])
    if tuple(logmel.shape) != (B, mel_cfg["n_mels"], 1 + S // hop):
        raise CaseError(f"{name}: log-mel shape {tuple(logmel.shape)}, expected {(B, mel_cfg['n_mels'], 1 + S // hop)}")
    out[f"{name}/logmel"] = logmel

    K, pool = model_cfg["kernel"], model_cfg["pool"]
    same = model_cfg["padding"] == "same"
    params = [P[k] for k in names]

    def forward(s=None):  # s: the step whose dropout mask applies; None: eval mode
        pre, h = [], logmel
        for i in range(len(channels)):
            if same:
                left = (K - 1) // 2
                h = F.pad(h, (left, K - 1 - left))
            z = F.conv1d(h, P[f"conv.{i}.weight"], P[f"conv.{i}.bias"])
            pre.append(z)
            h = torch.relu(z)
            if i + 1 < len(channels):
                h = F.max_pool1d(h, pool)
        feats = [h.mean(dim=2)]
        if n_feat >= 2:
            feats.append(h.amax(dim=2))
        if n_feat >= 3:
            feats.append(h.norm(dim=2))
        pooled = torch.cat(feats, 1)
        if keep is not None and s is not None:
            pooled = pooled * keep[s] / (1.0 - p_drop)
        lin = F.linear(pooled, P["linear.weight"], P["linear.bias"])
        return F.normalize(lin, p=2.0, dim=1, eps=model_cfg["l2_eps"]), pre

    eps = loss_cfg["eps"]

    def dist(x, y):
        return torch.sqrt(torch.clamp(2 * (1 - (x * y).sum(-1)), min=eps))

    loss_fn = nn.TripletMarginWithDistanceLoss(distance_function=dist, margin=loss_cfg["margin"],
                                               swap=loss_cfg["swap"], reduction="mean")

    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optim_cfg["name"]]
    opt = opt_cls(params, lr=optim_cfg["lr"], betas=(optim_cfg["beta1"], optim_cfg["beta2"]),
                  eps=optim_cfg["eps"], weight_decay=optim_cfg["weight_decay"])
    clip = optim_cfg["clip_norm"]

    with torch.no_grad():
        out[f"{name}/eval/emb"] = forward()[0]

    for s in range(steps):
        for p in params:
            p.grad = None
        emb, pre = forward(s)
        anc, pos, neg = emb[:n], emb[n:2 * n], emb[2 * n:]
        loss = loss_fn(anc, pos, neg)
        loss.backward()

        with torch.no_grad():
            d_ap, d_an, d_pn = dist(anc, pos), dist(anc, neg), dist(pos, neg)
            d_neg = torch.minimum(d_an, d_pn) if loss_cfg["swap"] else d_an
            hinge = loss_cfg["margin"] + d_ap - d_neg
            sq = torch.cat([2 * (1 - (x * y).sum(-1)) for x, y in ((anc, pos), (anc, neg), (pos, neg))])
            if float(sq.min()) < 10 * eps:
                raise CaseError(f"{name}, forward {s}: a squared distance {float(sq.min())} is near the eps "
                                f"clamp ({eps}); change the case's seeds")
            if float(hinge.abs().min()) < KINK_MARGIN:
                raise CaseError(f"{name}, forward {s}: a hinge is {float(hinge.abs().min())} from 0 (< {KINK_MARGIN}); "
                                "float32 may take the other branch: change the case's seeds")
            if loss_cfg["swap"] and float((d_an - d_pn).abs().min()) < KINK_MARGIN:
                raise CaseError(f"{name}, forward {s}: d(a,n) and d(p,n) tie within {KINK_MARGIN}; "
                                "change the case's seeds")
            print(f"{name} fwd{s}: loss {float(loss):.6f}, active {int((hinge > 0).sum())}/{n}, "
                  f"min |hinge| {float(hinge.abs().min()):.3g}, "
                  f"min |pre-activation| {min(float(z.abs().min()) for z in pre):.3g}")

        f = f"{name}/fwd{s}"
        out[f"{f}/emb"] = emb.detach()
        out[f"{f}/loss"] = loss.detach().reshape(1)
        out[f"{f}/active"] = (hinge > 0).sum().double().reshape(1)
        for i, z in enumerate(pre):
            out[f"{f}/pre.{i}"] = z.detach()
        for k in names:
            out[f"{f}/grad.{k}"] = P[k].grad.detach().clone()

        g = f"{name}/step{s + 1}"
        if clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        out[f"{g}/grad_norm"] = norm.detach().reshape(1)
        print(f"{name} step{s + 1}: gradient norm {float(norm):.6g} (clip_norm {clip})")
        for k in names:
            out[f"{g}/grad_clipped.{k}"] = P[k].grad.detach().clone()
        opt.step()
        for k in names:
            out[f"{g}/param.{k}"] = P[k].detach().clone()
        if not all(math.isfinite(float(p.detach().abs().max())) for p in params):
            raise CaseError(f"{name}: non-finite parameters after step {s + 1}")


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
