#!/usr/bin/env python3
"""The `leffa-bench train-step` benchmark in PyTorch/diffusers, for the ratio measured in one run.

What it times: one Leffa training step, as `leffa-bench train-step` does (SPEC.md §2–3):
both UNets forward (the reference UNet records the normalised input of every self-attention; the
generative UNet's self-attention runs over concat(own normalised tokens, recorded feature) and keeps
the target's n outputs; cross-attention returns its input), diffusion MSE on the predicted noise,
optionally the Leffa loss, backward, gradient clipping to norm 1, and an AdamW update of both UNets.
The UNets are diffusers' `UNet2DConditionModel`s; the Leffa behaviour is added with attention
processors (set_attn_processor), so diffusers' modules and parameter names stay as they are.

Before timing, the same step's loss is computed on the golden fixture (shared/fixtures/leffa_tiny,
written by the published model code) and checked: losses and outputs to relative 1e-4, gradients to
1e-3 (fixtures README). That proves the timed computation is the one our Swift trainer runs.

Reads the JSON that `leffa-bench train-step` wrote (threads, models, batch, latent sizes), times the
same cases with torch at the same thread count, prints both and the ratio, and writes its own JSON.
Without that JSON it times tiny and small at the defaults and prints the torch numbers only.

OpenMP threads sleep while waiting (OMP_WAIT_POLICY=PASSIVE, unless the environment sets it): with
the default spin-waiting, a 2-thread torch step on a 2-core machine that is also running anything
else got 5–20× slower and swung wildly (measured here), while leffa-bench's Dispatch threads don't
spin. On a quiet machine the policy should matter little; OMP_WAIT_POLICY=ACTIVE to compare.

Not a test: the project's tests never need PyTorch (or diffusers).

    python3 Scripts/bench_train_step_torch.py --swift-json bench-results/train-step.json
    python3 Scripts/bench_train_step_torch.py --validate-only
"""
import argparse
import json
import math
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FIXTURE = os.path.join(os.path.dirname(REPO), "shared", "fixtures", "leffa_tiny")

# Model sizes, as in Sources/LeffaModels/ModelConfig.swift's presets. SD1.5 layout at smaller widths.
MODELS = {
    "tiny": dict(block_out_channels=(32, 64, 64, 64), heads=2, norm_num_groups=8, cross_attention_dim=32),
    "small": dict(block_out_channels=(64, 128, 256, 256), heads=8, norm_num_groups=32, cross_attention_dim=64),
    "sd15": dict(block_out_channels=(320, 640, 1280, 1280), heads=8, norm_num_groups=32, cross_attention_dim=768),
}
DEFAULT_LATENT = {"tiny": (16, 8), "small": (32, 24), "sd15": (64, 48)}  # leffa-bench's sizes (image = 8 × latent)

# Leffa loss defaults (SPEC §3), optimizer settings (SPEC §4).
TAU, LAMBDA, T_THRESHOLD, MIN_RES_FRACTION = 2.0, 1e-3, 500, 1 / 32
LR, WEIGHT_DECAY, MAX_GRAD_NORM = 1e-5, 1e-2, 1.0


def build_unet(model, in_channels):
    """A diffusers UNet2DConditionModel with SD1.5's layout at the given size (SPEC §2)."""
    from diffusers import UNet2DConditionModel
    c = MODELS[model]
    return UNet2DConditionModel(
        sample_size=None, in_channels=in_channels, out_channels=4,
        block_out_channels=c["block_out_channels"], layers_per_block=2,
        attention_head_dim=c["heads"],  # diffusers' legacy name: this is the number of heads
        norm_num_groups=c["norm_num_groups"], cross_attention_dim=c["cross_attention_dim"],
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )


# ----------------------------------------------------------------------------------------------
# The Leffa model: reference features passed from one UNet to the other by attention processors.
# ----------------------------------------------------------------------------------------------

class LeffaState:
    """What the two UNets share during one forward pass."""

    def __init__(self, probe_layers=()):
        self.probe_layers = set(probe_layers)  # generative attn1 layers whose (Q, K_ref) the loss needs
        self.reset()

    def reset(self):
        self.features = {}   # reference UNet: normalised attn1 input per layer name, in execution order
        self.grid = None     # (h, w) of the transformer running now (set by a forward pre-hook)
        self.probes = {}     # layer: (layer, q, k_ref, heads, (h, w)) for the Leffa loss


def attention(attn, q, k, v):
    """Multi-head attention on already projected (B, len, C) tensors, then to_out."""
    b, heads = q.shape[0], attn.heads
    d = q.shape[-1] // heads
    split = lambda x: x.view(b, -1, heads, d).transpose(1, 2)
    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return attn.to_out[0](out.transpose(1, 2).reshape(b, -1, heads * d))  # to_out[1] is dropout


class IdentityCrossAttention:
    """attn2: text conditioning is removed; the block then adds norm2(h) to h (SPEC §2)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        return hidden_states


class ReferenceSelfAttention:
    """Reference UNet attn1: record the normalised input (norm1(h)), then plain self-attention."""

    def __init__(self, state, layer):
        self.state, self.layer = state, layer

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        self.state.features[self.layer] = hidden_states
        return attention(attn, attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states))


class GenerativeSelfAttention:
    """Generative UNet attn1: attend over concat(own tokens, reference feature), keep the first n.

    Only the target's n queries are projected: identical to attending with all 2n queries and
    slicing [:, :n], at half the query cost, and what leffa-bench does too. The reference feature
    is looked up by layer name (both UNets name their layers alike), so a block that gradient
    checkpointing runs again in backward finds the same one.
    """

    def __init__(self, state, layer):
        self.state, self.layer = state, layer

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        s = self.state
        ref = s.features[self.layer]
        n = hidden_states.shape[1]
        both = torch.cat([hidden_states, ref], dim=1)  # (B, 2n, C)
        q, k, v = attn.to_q(hidden_states), attn.to_k(both), attn.to_v(both)
        if self.layer in s.probe_layers:
            s.probes[self.layer] = (self.layer, q, k[:, n:], attn.heads, s.grid)
        return attention(attn, q, k, v)


def install_processors(unet, role, state):
    """Set the Leffa processors on every attention of `unet` (role "reference" or "generative")."""
    procs = {}
    for name in unet.attn_processors:  # "...transformer_blocks.0.attn1.processor"
        layer = name[: -len(".processor")]
        if layer.endswith("attn2"):
            procs[name] = IdentityCrossAttention()
        elif role == "reference":
            procs[name] = ReferenceSelfAttention(state, layer)
        else:
            procs[name] = GenerativeSelfAttention(state, layer)
    unet.set_attn_processor(procs)
    if role == "generative":  # the Leffa loss needs each layer's token grid
        def record_grid(module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            state.grid = tuple(x.shape[-2:])
        for module in unet.modules():
            if type(module).__name__ == "Transformer2DModel":
                module.register_forward_pre_hook(record_grid, with_kwargs=True)


def flow_layers(unet, image_height, latent_height, fraction=MIN_RES_FRACTION):
    """Generative attn1 layers whose token grid height is at least `fraction` of the image height."""
    layers = []
    for name in unet.attn_processors:
        layer = name[: -len(".processor")]
        if not layer.endswith("attn1"):
            continue
        if layer.startswith("down_blocks."):
            level = int(layer.split(".")[1])
        elif layer.startswith("up_blocks."):
            level = len(unet.up_blocks) - 1 - int(layer.split(".")[1])
        else:  # mid block: below the last downsampling
            level = len(unet.down_blocks) - 1
        grid = latent_height
        for _ in range(level):  # each stride-2 downsampler (3×3, padding 1) takes ⌈n/2⌉
            grid = (grid + 1) // 2
        if grid >= fraction * image_height:
            layers.append(layer)
    return layers


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------

def leffa_flows(state):
    """{layer: flow (B, h, w, 2)}: mean over heads of softmax(Q K_refᵀ / (√d τ)) times the token grid."""
    flows = {}
    for layer, q, k, heads, (h, w) in state.probes.values():
        b, n, c = q.shape
        d = c // heads
        qh = q.view(b, n, heads, d).transpose(1, 2)
        kh = k.view(b, n, heads, d).transpose(1, 2)
        a = torch.softmax(qh @ kh.transpose(-1, -2) / (math.sqrt(d) * TAU), dim=-1).mean(dim=1)  # (B, n, n)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, dtype=q.dtype), torch.linspace(-1, 1, w, dtype=q.dtype),
                                indexing="ij")
        coords = torch.stack([xs, ys], dim=-1).reshape(h * w, 2)  # row-major tokens, (x, y)
        flows[layer] = (a @ coords).view(b, h, w, 2)
    return flows


def leffa_loss(flows, img_ref, img_tgt, mask, t):
    """Σ_l masked MSE(target, reference warped by the layer's flow), gated by t < 500, batch mean."""
    H, W = img_ref.shape[-2:]
    per_sample = 0
    for flow in flows.values():
        grid = F.interpolate(flow.permute(0, 3, 1, 2), size=(H, W), mode="bilinear", align_corners=False)
        warped = F.grid_sample(img_ref, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros",
                               align_corners=True)
        per_sample = per_sample + (((img_tgt - warped) * mask) ** 2).mean(dim=(1, 2, 3))
    gate = (t < T_THRESHOLD).to(img_ref.dtype)
    return (gate * per_sample).mean()


def step_loss(gen, ref, state, batch, leffa):
    """Forward both UNets and return (total, diffusion, leffa or None, eps, flows)."""
    state.reset()
    ref(batch["ref_latent"], batch["t"], encoder_hidden_states=None)  # records features; output unused
    eps = gen(batch["x"], batch["t"], encoder_hidden_states=None).sample
    diffusion = F.mse_loss(eps, batch["noise"])
    if not leffa:
        return diffusion, diffusion, None, eps, {}
    flows = leffa_flows(state)
    lf = leffa_loss(flows, batch["img_ref"], batch["img_tgt"], batch["mask"], batch["t"])
    return diffusion + LAMBDA * lf, diffusion, lf, eps, flows


def make_model(model, latent_hw, image_hw, leffa):
    """Both UNets with their processors; the generative UNet probes the Leffa layers if `leffa`."""
    gen, ref = build_unet(model, 12), build_unet(model, 4)
    layers = flow_layers(gen, image_hw[0], latent_hw[0])
    state = LeffaState(layers if leffa else ())
    install_processors(ref, "reference", state)
    install_processors(gen, "generative", state)
    return gen, ref, state, layers


# ----------------------------------------------------------------------------------------------
# Validation against the golden fixture
# ----------------------------------------------------------------------------------------------

def tolerance_used(a, b, rtol, atol=1e-6):
    """max over elements of |a − b| / (atol + rtol·max(|a|, |b|)): the check passes when ≤ 1.

    The rule of the project's golden tests (Tests/TestSupport/GradCheck.swift, goldenOutput and
    goldenGradient). The absolute part matters for the flows: with random weights the attention is
    nearly uniform, the flows are ~1e-4 (coordinates ±1 cancelling), and float32 rounding (~3e-8)
    alone is a few 1e-4 of their size.
    """
    a, b = a.detach().double(), b.double()
    return ((a - b).abs() / (atol + rtol * torch.maximum(a.abs(), b.abs()))).max().item()


def validate(fixture_dir):
    """The timed step's loss and backward on the golden fixture's weights and inputs; asserts agreement."""
    from safetensors.torch import load_file
    cfg = json.load(open(os.path.join(fixture_dir, "config.json")))
    u = cfg["unet"]
    assert (tuple(u["block_out_channels"]), u["attention_heads"], u["norm_num_groups"], u["cross_attention_dim"]) == \
        (MODELS["tiny"]["block_out_channels"], MODELS["tiny"]["heads"], MODELS["tiny"]["norm_num_groups"],
         MODELS["tiny"]["cross_attention_dim"]), "fixture config is not the tiny preset"
    assert (cfg["tau"], cfg["leffa_weight"], cfg["timestep_threshold"], cfg["min_resolution_fraction"]) == \
        (TAU, LAMBDA, T_THRESHOLD, MIN_RES_FRACTION)
    weights = load_file(os.path.join(fixture_dir, "weights.safetensors"))
    io = load_file(os.path.join(fixture_dir, "io.safetensors"))

    gen, ref, state, layers = make_model("tiny", cfg["latent_hw"], cfg["image_hw"], leffa=True)
    assert layers == cfg["flow_layers"], f"flow layers differ: {layers} vs {cfg['flow_layers']}"
    for unet, prefix in ((gen, "unet."), (ref, "unet_encoder.")):
        sd = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        unet.load_state_dict(sd, strict=True)  # names and shapes must match diffusers exactly

    batch = {"x": io["in.x"], "ref_latent": io["in.ref_latent"], "t": io["in.t"], "noise": io["in.noise"],
             "img_ref": io["in.img_ref"], "img_tgt": io["in.img_tgt"], "mask": io["in.mask"]}
    total, diffusion, lf, eps, flows = step_loss(gen, ref, state, batch, leffa=True)
    total.backward()

    losses = {}
    for name, value in (("diffusion_loss", diffusion), ("leffa_loss", lf), ("total_loss", total)):
        want = io[f"out.{name}"].reshape(())
        losses[name] = abs(value.item() - want.item()) / abs(want.item())
        print(f"  {name:15} torch {value.item():.8g}   fixture {want.item():.8g}   rel err {losses[name]:.1e}")
    outputs = {"out.eps": eps}
    outputs.update({f"out.ref_feature.{i}": f for i, f in enumerate(state.features.values())})
    outputs.update({f"out.flow.{k}": v for k, v in flows.items()})
    missing = [k for k in io if k.startswith(("out.ref_feature.", "out.flow.")) and k not in outputs]
    assert not missing, f"not produced: {missing}"
    out_used = max(tolerance_used(v, io[k], rtol=1e-4) for k, v in outputs.items())
    params = {f"unet.{k}": p for k, p in gen.named_parameters()}
    params.update({f"unet_encoder.{k}": p for k, p in ref.named_parameters()})
    grads = [k for k in io if k.startswith("grad.")]
    grad_used = max(tolerance_used(params[k[len("grad."):]].grad, io[k], rtol=1e-3) for k in grads)
    print(f"  outputs (eps, {len(state.features)} reference features, {len(flows)} flows): "
          f"{100 * out_used:.1f} % of the tolerance (rtol 1e-4, atol 1e-6)")
    print(f"  gradients ({len(grads)} parameters in the fixture): "
          f"{100 * grad_used:.1f} % of the tolerance (rtol 1e-3, atol 1e-6)")
    assert max(losses.values()) < 1e-4 and out_used <= 1 and grad_used <= 1, \
        "the PyTorch step does not match the golden fixture"
    return {"losses_rel_err": losses, "outputs_tolerance_used": out_used, "gradients_tolerance_used": grad_used}


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------

def random_batch(b, h, w, seed):
    """A seeded random batch of leffa-bench's shapes; timesteps 100, 400 (< 500: Leffa loss active)."""
    g = torch.Generator().manual_seed(seed)
    H, W = 8 * h, 8 * w
    uniform = lambda *shape: torch.rand(*shape, generator=g) * 2 - 1
    x = torch.cat([torch.randn(b, 4, h, w, generator=g),                   # noisy latent
                   (torch.rand(b, 1, h, w, generator=g) > 0.5).float(),    # mask at latent size
                   torch.randn(b, 4, h, w, generator=g),                   # masked-image latent
                   uniform(b, 3, h, w)], dim=1)                            # densepose
    return {"x": x, "ref_latent": torch.randn(b, 4, h, w, generator=g),
            "t": torch.tensor([100 + 300 * i % 499 for i in range(b)]),
            "noise": torch.randn(b, 4, h, w, generator=g),
            "img_ref": uniform(b, 3, H, W), "img_tgt": uniform(b, 3, H, W),
            "mask": (torch.rand(b, 1, H, W, generator=g) > 0.5).float()}


def reset_peak_rss():
    """Starts a new resident-set peak (Linux: 5 to clear_refs resets VmHWM), so each case has its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss():
    """The process's resident peak in bytes (VmHWM), as leffa-bench reads it."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def time_step(model, batch_size, latent_hw, leffa, repeats, train=("unet", "unet_encoder"), checkpointing=False):
    """(median, best) seconds of a full training step: forward, loss, backward, clip, AdamW.

    `train` without unet_encoder freezes the reference UNet (requires_grad off: no gradients, no
    optimizer state), as `leffa-bench train-step --train unet` does. `checkpointing` turns on
    diffusers' gradient checkpointing in the UNets that train (activations of each block
    recomputed in backward), as `training.activation_checkpointing` does in ours."""
    torch.manual_seed(1)
    h, w = latent_hw
    gen, ref, state, _ = make_model(model, (h, w), (8 * h, 8 * w), leffa)
    if "unet_encoder" not in train:
        ref.requires_grad_(False)
    if checkpointing:
        gen.enable_gradient_checkpointing()
        if "unet_encoder" in train:
            ref.enable_gradient_checkpointing()
    params = [p for p in list(gen.parameters()) + list(ref.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    batch = random_batch(batch_size, h, w, seed=11)

    def step():
        opt.zero_grad(set_to_none=True)
        total = step_loss(gen, ref, state, batch, leffa)[0]
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()

    step()  # warm-up
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], times[0]  # the median as leffa-bench takes it


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--swift-json", default="bench-results/train-step.json", help="what leffa-bench train-step wrote")
    ap.add_argument("--json", default="bench-results/train-step-torch.json", help="where to write torch's numbers")
    ap.add_argument("--fixture", default=DEFAULT_FIXTURE, help="golden fixture directory (leffa_tiny)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per case (median taken)")
    ap.add_argument("--models", help="comma-separated (tiny, small, sd15); default: the Swift JSON's, else tiny,small")
    ap.add_argument("--train", help="parts that train: unet or unet,unet_encoder (default: the Swift JSON's, else both)")
    ap.add_argument("--threads", type=int, help="torch threads (default: the Swift JSON's, else 2)")
    ap.add_argument("--validate-only", action="store_true", help="check against the fixture and stop")
    args = ap.parse_args()

    # Must be set before torch loads its OpenMP runtime (see the top of this file).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:  # imported here so that a machine without them gets a message, not a traceback
        global torch, F
        import torch
        import torch.nn.functional as F
        import diffusers
    except ImportError as e:
        print(f"{e.name} is not installed: skipping the PyTorch comparison (pip install torch diffusers)")
        return 0

    swift = json.load(open(args.swift_json)) if os.path.exists(args.swift_json) else None
    threads = args.threads or (swift or {}).get("threads", 2)
    torch.set_num_threads(threads)

    print(f"validating the PyTorch step against {args.fixture}")
    validation = validate(args.fixture)
    print("  OK: the timed step computes what the golden fixture holds")
    if args.validate_only:
        return 0

    # The cases: leffa-bench's models, batch and latent size if we have its JSON, else the defaults;
    # per model the (Leffa loss, activation checkpointing) pairs it ran.
    cases, variants, swift_rows, train = {}, {}, {}, None
    if swift:
        for r in swift["rows"]:
            key = (r["leffa"], r.get("activation_checkpointing", False))
            cases.setdefault(r["model"], (r["batch"], tuple(r["latent"])))
            variants.setdefault(r["model"], []).append(key)
            swift_rows[(r["model"],) + key] = r
            train = train or r.get("train")
    else:
        print(f"\n{args.swift_json} not found: torch numbers only")
    names = args.models.split(",") if args.models else list(cases) or ["tiny", "small"]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        print(f"skipping models this script does not know: {', '.join(unknown)}")
    cases = {m: cases.get(m, (2, DEFAULT_LATENT[m])) for m in names if m in MODELS}
    train = tuple(args.train.split(",")) if args.train else tuple(train or ("unet", "unet_encoder"))

    print(f"\nPyTorch {torch.__version__}, diffusers {diffusers.__version__}, {threads} thread(s) "
          f"(OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}), median and best of {args.repeats} steps after 1 warm-up, "
          f"training {' + '.join(train)}")
    print(f"{'':29}{'---- torch ----':>30}{'---- swift ----':>30}{'-- swift/torch --':>20}")
    print(f"{'model':8}{'latent':9}{'leffa':6}{'ckpt':6}{'median ms':>10}{'best ms':>10}{'RSS GiB':>10}{'median ms':>10}{'best ms':>10}"
          f"{'RSS GiB':>10}{'median':>10}{'best':>10}")
    rows, overhead, swift_overhead = [], {}, {}
    gib = 1 << 30
    for model, (b, (h, w)) in cases.items():
        med = {}
        for leffa, ckpt in variants.get(model, [(False, False), (True, False)]):
            label = f"{model:8}{f'{h}x{w}':9}{'on' if leffa else 'off':6}{'on' if ckpt else 'off':6}"
            base = {"model": model, "batch": b, "latent": [h, w], "leffa": leffa, "activation_checkpointing": ckpt,
                    "train": list(train)}
            reset_peak_rss()
            try:
                t, best = time_step(model, b, (h, w), leffa, args.repeats, train, ckpt)
            except RuntimeError as e:  # torch's allocator failing; the kernel's OOM killer would end the process instead
                if "memory" not in str(e).lower():
                    raise
                print(f"{label}  PyTorch ran out of memory: {str(e).splitlines()[0]}")
                rows.append(dict(base, out_of_memory=str(e).splitlines()[0], peak_rss_bytes=peak_rss()))
                continue
            med[(leffa, ckpt)] = t
            rss = peak_rss()
            row = dict(base, seconds=t, best_seconds=best, images_per_second=b / t, peak_rss_bytes=rss)
            line = f"{label}{1e3 * t:10.1f}{1e3 * best:10.1f}{rss / gib:10.2f}"
            sw_row = swift_rows.get((model, leffa, ckpt))
            if sw_row:
                sw, sw_best, sw_rss = sw_row["seconds"], sw_row["best_seconds"], sw_row.get("peak_rss_bytes") or 0
                row.update(swift_seconds=sw, swift_best_seconds=sw_best, swift_peak_rss_bytes=sw_rss,
                           swift_over_torch_time=sw / t, swift_over_torch_best_time=sw_best / best)
                line += f"{1e3 * sw:10.1f}{1e3 * sw_best:10.1f}{sw_rss / gib:10.2f}{sw / t:10.2f}{sw_best / best:10.2f}"
            rows.append(row)
            print(line)
        for ckpt in (False, True):
            if (True, ckpt) not in med or (False, ckpt) not in med:
                continue
            name = model + (" checkpointed" if ckpt else "")
            overhead[name] = med[(True, ckpt)] / med[(False, ckpt)] - 1
            line = f"        Leffa loss overhead{' (checkpointed)' if ckpt else ''}: torch {100 * overhead[name]:+.1f} %"
            on, off = swift_rows.get((model, True, ckpt)), swift_rows.get((model, False, ckpt))
            if on and off:
                swift_overhead[name] = on["seconds"] / off["seconds"] - 1
                line += f", swift {100 * swift_overhead[name]:+.1f} %"
            print(line)
    print("(swift/torch < 1: our step is faster)")

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    json.dump({"torch_version": torch.__version__, "diffusers_version": diffusers.__version__, "threads": threads,
               "omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "repeats": args.repeats, "validation": validation,
               "rows": rows, "leffa_overhead": overhead, "swift_leffa_overhead": swift_overhead},
              open(args.json, "w"), indent=1)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
