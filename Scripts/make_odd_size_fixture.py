#!/usr/bin/env python3
"""The odd-size golden fixture: one forward and backward pass of the Leffa model at a latent size
that the UNet's downsamplers round up (20×11: heights 20 → 10 → 5 → 3, widths 11 → 6 → 3 → 2),
where diffusers' UNet2DConditionModel resizes each upsampled map to its skip connection's size.

The model is bench_train_step_torch.py's: diffusers' UNet2DConditionModel (the class the published
Leffa UNets copy, `forward_upsample_size` included) with attention processors doing Leffa's
reference concatenation, and the Leffa loss as SPEC.md defines it. Before writing anything it
reproduces the published model's golden fixture (../shared/fixtures/leffa_tiny) within that
fixture's tolerances, then reuses the fixture's weights at the odd size.

Writes Tests/LeffaModelTests/Fixtures/odd-size/{config.json, io.safetensors}, named like the
shared fixture (its weights are not copied: the test loads them from ../shared). Not run by the
tests, which never need Python:

    /tmp/ref/bin/python Scripts/make_odd_size_fixture.py
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_train_step_torch as leffa  # noqa: E402

leffa.torch, leffa.F = torch, torch.nn.functional  # that module imports torch in its main()

LATENT = (20, 11)
IMAGE = (8 * LATENT[0], 8 * LATENT[1])
BATCH = 2
OUT = os.path.join(leffa.REPO, "Tests", "LeffaModelTests", "Fixtures", "odd-size")


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    print("reproducing the published model's fixture first:")
    leffa.validate(leffa.DEFAULT_FIXTURE)

    shared = json.load(open(os.path.join(leffa.DEFAULT_FIXTURE, "config.json")))
    weights = load_file(os.path.join(leffa.DEFAULT_FIXTURE, "weights.safetensors"))
    shared_io = load_file(os.path.join(leffa.DEFAULT_FIXTURE, "io.safetensors"))
    gen, ref, state, layers = leffa.make_model("tiny", LATENT, IMAGE, leffa=True)
    for unet, prefix in ((gen, "unet."), (ref, "unet_encoder.")):
        unet.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}, strict=True)

    batch = leffa.random_batch(BATCH, *LATENT, seed=11)
    batch["t"] = torch.tensor([120, 730])  # the second is gated out of the Leffa loss
    total, diffusion, lf, eps, flows = leffa.step_loss(gen, ref, state, batch, leffa=True)
    total.backward()
    grids = {k: tuple(v.shape[1:3]) for k, v in flows.items()}
    assert (3, 2) in grids.values() or (5, 3) in grids.values() or len(set(grids.values())) > 1, grids

    io = {"in.x": batch["x"], "in.ref_latent": batch["ref_latent"], "in.t": batch["t"].to(torch.int64),
          "in.img_ref": batch["img_ref"], "in.img_tgt": batch["img_tgt"], "in.mask": batch["mask"],
          "in.noise": batch["noise"], "out.eps": eps,
          "out.diffusion_loss": diffusion.reshape(1), "out.leffa_loss": lf.reshape(1), "out.total_loss": total.reshape(1)}
    io.update({f"out.ref_feature.{i}": f for i, f in enumerate(state.features.values())})
    io.update({f"out.flow.{k}": v for k, v in flows.items()})
    params = {f"unet.{k}": p for k, p in gen.named_parameters()}
    params.update({f"unet_encoder.{k}": p for k, p in ref.named_parameters()})
    for name in (k for k in shared_io if k.startswith("grad.")):  # the same parameters as the shared fixture
        io[name] = params[name[len("grad."):]].grad
    io = {k: v.detach().contiguous() for k, v in io.items()}

    os.makedirs(OUT, exist_ok=True)
    save_file(io, os.path.join(OUT, "io.safetensors"))
    config = {k: shared[k] for k in ("config", "tau", "leffa_weight", "timestep_threshold", "min_resolution_fraction", "unet", "vae")}
    config.update({"latent_hw": list(LATENT), "image_hw": list(IMAGE), "batch": BATCH, "flow_layers": layers,
                   "weights": "../shared/fixtures/leffa_tiny/weights.safetensors",
                   "made_by": "Scripts/make_odd_size_fixture.py (diffusers " + __import__("diffusers").__version__
                              + ", torch " + torch.__version__ + ")",
                   "tensors": {k: list(v.shape) for k, v in io.items()}})
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    print(f"wrote {OUT}: {len(io)} tensors, latent {LATENT}, flow grids {sorted(set(grids.values()))}, "
          f"losses {diffusion.item():.6g} / {lf.item():.6g}")


if __name__ == "__main__":
    main()
