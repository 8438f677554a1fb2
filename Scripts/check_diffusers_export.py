#!/usr/bin/env python3
"""Loads a `leffa-coord export --format diffusers` folder with diffusers itself (needs torch,
diffusers, safetensors; the test suite does not) and checks that every UNet and the VAE load with
no missing, unexpected or mismatched keys and the stored values. With --leffa FILE, also checks that
the folders hold the same tensors as a `--format leffa` export of the same weights.

    python3 Scripts/check_diffusers_export.py EXPORT_DIR [--leffa FILE]
"""
import argparse, sys
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file

ap = argparse.ArgumentParser()
ap.add_argument("folder")
ap.add_argument("--leffa")
a = ap.parse_args()
leffa = load_file(a.leffa) if a.leffa else None
ok = True
for part, cls in [("unet", UNet2DConditionModel), ("unet_encoder", UNet2DConditionModel), ("vae", AutoencoderKL)]:
    model, info = cls.from_pretrained(f"{a.folder}/{part}", output_loading_info=True, low_cpu_mem_usage=False)
    stored = load_file(f"{a.folder}/{part}/diffusion_pytorch_model.safetensors")
    state = model.state_dict()
    problems = {k: len(info[k]) for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[k]}
    differ = [k for k in stored if not torch.equal(stored[k].float(), state[k].float())]
    line = f"{part}: {len(stored)} tensors loaded by diffusers {cls.__name__}"
    if problems or differ:
        ok = False
        line += f" — PROBLEMS {problems}, {len(differ)} values differ"
    if leffa is not None:
        other = [k for k in stored if not torch.equal(stored[k], leffa[f"{part}.{k}"])]
        line += f"; vs the leffa export: {len(other)} differ"
        ok = ok and not other
    print(line)
print("ok" if ok else "FAILED")
sys.exit(0 if ok else 1)
