"""The melgraph model as a PyTorch nn.Module built from a melgraph checkpoint: the one PyTorch
definition of the model, used by the speed comparison (bench/compare/compare.py, float32) and
the whole-model reference test (ref_model.py, float64 with the engine's dropout masks).

  torchaudio MelSpectrogram -> log(mel + log_eps)                       (no parameters)
  -> (x - mean) / std per band (model.input_norm = band; the checkpoint's input statistics)
  [Conv1d -> ReLU -> MaxPool1d (not after the last stage)] x stages      ("same" padding: F.pad,
                                                                          PyTorch's split for even K)
  global pooling over time per channel, [mean | max | l2] as model.pooling says, of the last
  stage's output or (model.pool_stages = all) of every stage's, concatenated in stage order
  -> BatchNorm1d (model.head_norm = batch) -> Dropout (model.dropout; training mode only)
  -> Linear -> F.normalize                                               -> embeddings [B, E]
  item embedding (embed()): that, or with model.embedding_from = features F.normalize of the
  pooled features after BatchNorm1d
  loss: nn.TripletMarginWithDistanceLoss, d(x, y) = sqrt(clamp(2 (1 - x.y), eps)), or the
        supervised contrastive loss over graph positives (contrastive_loss)
  optimizer: torch.optim.Adam / AdamW (after clip_grad_norm_ when clip_norm > 0)

Parameter names are the checkpoint's (engine/checkpoint.h): conv.{i}.weight [Cout, Cin, K],
conv.{i}.bias, head_norm.weight, head_norm.bias [D], linear.weight [E, D], linear.bias (D = k C_last,
or k (C_0 + C_1 + ...) with every stage pooled); the state beside them (input_norm.mean,
input_norm.std [n_mels], head_norm.running_mean, head_norm.running_var [D]) becomes the module's buffers. The config comes from the checkpoint's TOML
(__metadata__["config"]), read with tomllib (Python 3.11+), tomli, or, failing both, a reader
for the canonical TOML that melgraph writes (engine/config.h to_toml).
"""
import ast
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402


def parse_toml(text):
    try:
        import tomllib
        return tomllib.loads(text)
    except ImportError:
        pass
    try:
        import tomli
        return tomli.loads(text)
    except ImportError:
        pass
    # melgraph's to_toml: [section] headers and `key = value` lines, values being quoted
    # strings, true/false, numbers (inf/nan included) or flat arrays of numbers; no comments.
    specials = {"true": True, "false": False, "inf": float("inf"), "+inf": float("inf"), "-inf": float("-inf"),
                "nan": float("nan")}
    out = {}
    section = out
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]") and "=" not in line:
            section = out.setdefault(line[1:-1].strip(), {})
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"config TOML line {n}: expected 'key = value', got {line!r}")
        value = value.strip()
        section[key.strip()] = specials[value] if value in specials else ast.literal_eval(value)
    return out


def param_names(cfg):
    """The trained tensors of the config's model, in the checkpoint's order."""
    names = []
    for i in range(len(cfg["model"]["channels"])):
        names += [f"conv.{i}.weight", f"conv.{i}.bias"]
    if cfg["model"].get("head_norm", "none") == "batch":
        names += ["head_norm.weight", "head_norm.bias"]
    return names + ["linear.weight", "linear.bias"]


def state_names(cfg):
    """The state saved beside the parameters (engine/model.h state_layout)."""
    names = []
    if cfg["model"].get("input_norm", "none") == "band":
        names += ["input_norm.mean", "input_norm.std"]
    if cfg["model"].get("head_norm", "none") == "batch":
        names += ["head_norm.running_mean", "head_norm.running_var"]
    return names


def load_checkpoint(path):
    """(config dict, {name: float32 ndarray}) of a melgraph checkpoint; ValueError naming the
    file when it is not one."""
    tensors, meta = st.load(path)
    if meta.get("format") != "melgraph-checkpoint":
        raise ValueError(f"{path}: not a melgraph checkpoint (metadata 'format' is {meta.get('format')!r})")
    cfg = parse_toml(meta["config"])
    names = param_names(cfg) + state_names(cfg)
    params = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    if sorted(params) != sorted(names):
        raise ValueError(f"{path}: tensors {sorted(params)}, expected {sorted(names)}")
    return cfg, params


def mel_transform(cfg):
    """torchaudio's MelSpectrogram with the config's [mel] settings, in the default dtype."""
    import torch
    import torchaudio

    m = cfg["mel"]
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg["audio"]["sample_rate"], n_fft=m["n_fft"], win_length=m["n_fft"], hop_length=m["hop"],
        f_min=m["f_min"], f_max=m["f_max"] if m["f_max"] > 0 else None, pad=0, n_mels=m["n_mels"],
        window_fn=torch.hann_window, power=m["power"], normalized=False, center=True, pad_mode="reflect",
        onesided=True, norm=None if m["norm"] == "none" else m["norm"], mel_scale=m["mel_scale"])


def log_mel(transform, audio, cfg):
    """audio [B, S] -> log(MelSpectrogram(audio) + log_eps) [B, n_mels, 1 + S // hop]."""
    import torch

    return torch.log(transform(audio) + cfg["mel"]["log_eps"])


def make_net(cfg):
    """The conv stack and head as an nn.Module, in the default dtype; forward(logmel,
    return_pre=False, keep=None) -> emb [B, E] (and, with return_pre, the conv outputs before
    ReLU). keep (bool [B, k C], training mode only): the dropout pattern to apply instead of
    drawing one, x * keep / (1 - p) as F.dropout computes it, so that another implementation's
    mask can be replayed. embed(logmel): the item embedding (the engine's Model::embed)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    model_cfg = cfg["model"]
    channels, K, pool = model_cfg["channels"], model_cfg["kernel"], model_cfg["pool"]
    same = model_cfg["padding"] == "same"
    l2_eps = model_cfg["l2_eps"]
    pooling = model_cfg.get("pooling", "mean")
    features = {"mean": 1, "mean_max": 2, "mean_max_l2": 3}[pooling]
    input_norm = model_cfg.get("input_norm", "none") == "band"
    head_norm = model_cfg.get("head_norm", "none") == "batch"
    features_out = model_cfg.get("embedding_from", "linear") == "features"
    all_stages = model_cfg.get("pool_stages", "last") == "all"
    width = features * (sum(channels) if all_stages else channels[-1])  # the head's fan-in D

    class MelgraphNet(nn.Module):
        def __init__(self):
            super().__init__()
            cin = cfg["mel"]["n_mels"]
            convs = []
            for c in channels:
                convs.append(nn.Conv1d(cin, c, K))
                cin = c
            self.conv = nn.ModuleList(convs)
            if input_norm:
                self.input_norm = nn.Module()
                n_mels = cfg["mel"]["n_mels"]
                self.input_norm.register_buffer("mean", torch.zeros(n_mels))
                self.input_norm.register_buffer("std", torch.ones(n_mels))
            if head_norm:  # the engine's BatchNormParams: eps 1e-5, momentum 0.1 (torch's defaults)
                self.head_norm = nn.BatchNorm1d(width, eps=1e-5, momentum=0.1)
            self.dropout = nn.Dropout(model_cfg.get("dropout", 0.0))
            self.linear = nn.Linear(width, model_cfg["embedding"])

        def features(self, logmel, return_pre=False):
            """The pooled features after head_norm [B, D], and the conv outputs before ReLU."""
            pre, blocks, h = [], [], logmel
            if input_norm:
                h = (h - self.input_norm.mean[:, None]) / self.input_norm.std[:, None]
            for i, conv in enumerate(self.conv):
                if same:
                    left = (K - 1) // 2
                    h = F.pad(h, (left, K - 1 - left))
                z = conv(h)
                if return_pre:
                    pre.append(z)
                h = torch.relu(z)
                if i + 1 < len(self.conv):
                    h = F.max_pool1d(h, pool)
                if all_stages or i + 1 == len(self.conv):
                    blocks += [h.mean(dim=2), h.amax(dim=2), torch.linalg.vector_norm(h, dim=2)][:features]
            h = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0]  # [B, D]
            if head_norm:
                h = self.head_norm(h)
            return h, pre

        def forward(self, logmel, return_pre=False, keep=None):
            h, pre = self.features(logmel, return_pre)
            if keep is None:
                h = self.dropout(h)
            elif self.training:
                h = h * keep / (1.0 - self.dropout.p)
            else:
                raise ValueError("a dropout pattern (keep) in eval mode, which has no dropout")
            emb = F.normalize(self.linear(h), p=2.0, dim=1, eps=l2_eps)
            return (emb, pre) if return_pre else emb

        def embed(self, logmel):
            if not features_out:
                return self(logmel)
            return F.normalize(self.features(logmel)[0], p=2.0, dim=1, eps=l2_eps)

    return MelgraphNet()


def load_params(net, params):
    """Copies checkpoint arrays into the module's parameters and buffers (converting to their
    dtype)."""
    import torch

    named = dict(net.named_parameters())
    named.update(net.named_buffers())
    with torch.no_grad():
        for k, v in params.items():
            named[k].copy_(torch.from_numpy(v))


def distance(eps):
    import torch

    def dist(x, y):
        return torch.sqrt(torch.clamp(2 * (1 - (x * y).sum(-1)), min=eps))

    return dist


def loss_fn(cfg):
    import torch.nn as nn

    loss_cfg = cfg["loss"]
    return nn.TripletMarginWithDistanceLoss(distance_function=distance(loss_cfg["eps"]), margin=loss_cfg["margin"],
                                           swap=loss_cfg["swap"], reduction="mean")


def contrastive_loss(emb, hops, cfg):
    """The supervised contrastive loss of kernels/contrastive_loss_cpu.h: emb [N, E], hops [N, N]
    (int) -> (mean loss over rows with a positive, number of such rows)."""
    import torch

    n = emb.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    pos = (hops <= cfg["train"]["pos_hops"]) & ~eye
    support = (pos | (hops >= cfg["train"]["neg_hops"])) & ~eye
    s = emb @ emb.T / cfg["loss"]["temperature"]
    lse = torch.logsumexp(s.masked_fill(~support, float("-inf")), dim=1)
    n_pos = pos.sum(1)
    valid = n_pos > 0
    per_row = lse - (s * pos).sum(1) / n_pos.clamp(min=1)
    return per_row[valid].mean(), int(valid.sum())


def make_optimizer(params, cfg):
    import torch

    o = cfg["optim"]
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[o["name"]]
    return cls(params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"], weight_decay=o["weight_decay"])
