#!/usr/bin/env python3
"""Loads a `leffa-coord export --format diffusers` folder with diffusers itself (needs torch,
diffusers, safetensors; the test suite does not) and checks that every UNet and the VAE load with
no missing, unexpected or mismatched keys and the stored values, whatever the export's dtype
(float32, float16, bfloat16: diffusers may hold the model in another dtype, so values are compared
after an exact widening to float32). With --leffa FILE, also checks that the folders hold the same
tensors as a `--format leffa` export of the same weights: equal when both have one dtype; when one
is float32 and the other 16-bit, the float32 one rounded by PyTorch (round to nearest even) must
give the 16-bit one bit for bit, which checks the exporter's rounding against PyTorch's.

    python3 Scripts/check_diffusers_export.py EXPORT_DIR [--leffa FILE]
"""
import argparse, sys
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file

ap = argparse.ArgumentParser()
ap.add_argument("folder")
ap.add_argument("--leffa")
a = ap.parse_args()
leffa = load_file(a.leffa) if a.leffa else None
ok = True


def same(x, y):
    """(equal?, how they were compared, largest relative difference in float32). Relative to
    max(|value|, the narrower dtype's smallest normal): below it (subnormals) the spacing is fixed,
    so rounding is then bounded absolutely; 16-bit rounding gives at most 2^-11 (float16), 2^-8 (bfloat16)."""
    tiny = max(torch.finfo(x.dtype).tiny, torch.finfo(y.dtype).tiny)
    rel = ((x.float() - y.float()).abs() / y.float().abs().clamp_min(tiny)).max().item() if x.numel() else 0.0
    if x.dtype == y.dtype:
        return torch.equal(x, y), "equal", rel
    if x.dtype == torch.float32:
        return torch.equal(x.to(y.dtype), y), f"float32 rounded to {y.dtype}", rel
    if y.dtype == torch.float32:
        return torch.equal(x, y.to(x.dtype)), f"float32 rounded to {x.dtype}", rel
    return rel <= 2**-7, "float16 vs bfloat16 within 2^-7", rel


for part, cls in [("unet", UNet2DConditionModel), ("unet_encoder", UNet2DConditionModel), ("vae", AutoencoderKL)]:
    path = f"{a.folder}/{part}/diffusion_pytorch_model.safetensors"
    model, info = cls.from_pretrained(f"{a.folder}/{part}", output_loading_info=True, low_cpu_mem_usage=False)
    stored = load_file(path)
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in stored.values()})
    state = model.state_dict()
    problems = {k: len(info[k]) for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[k]}
    # Widening float16/bfloat16 to float32 is exact, so equal values compare equal whatever dtype diffusers chose.
    differ = [k for k in stored if not torch.equal(stored[k].float(), state[k].float())]
    line = (f"{part}: {len(stored)} tensors ({'/'.join(dtypes)}, metadata dtype {meta.get('dtype', '-')}) "
            f"loaded by diffusers {cls.__name__} as {next(model.parameters()).dtype}")
    if problems or differ:
        ok = False
        line += f" — PROBLEMS {problems}, {len(differ)} values differ"
    if meta.get("dtype") and dtypes != [meta["dtype"]]:
        ok = False
        line += f" — metadata says {meta['dtype']}, tensors are {dtypes}"
    if leffa is not None:
        results = [same(stored[k], leffa[f"{part}.{k}"]) for k in stored]
        other = sum(not r[0] for r in results)
        how = sorted({r[1] for r in results})
        worst = max(r[2] for r in results)
        line += f"; vs the leffa export ({', '.join(how)}): {other} differ, largest relative difference {worst:.3g}"
        ok = ok and not other
    print(line)
print("ok" if ok else "FAILED")
sys.exit(0 if ok else 1)
