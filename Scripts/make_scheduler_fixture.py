#!/usr/bin/env python3
"""Writes Tests/LeffaTrainingTests/Fixtures/scheduler.json: sampling steps of diffusers' DDPMScheduler
and DDIMScheduler with classifier-free guidance and rescale_noise_cfg, and the published pipeline's
repaint, that LeffaTraining's sampler must reproduce (SchedulerFixtureTests reads the file).

Made with diffusers 0.42.1, torch 2.15.0, Pillow 13.0.0, numpy 2.4.6, by this command from the
package root:

    /tmp/ref/bin/python Scripts/make_scheduler_fixture.py

Schedulers are configured as the published Leffa model loads its scheduler (DDPMScheduler.from_pretrained
on the SD1.5 inpainting folder, whose config sets scaled_linear betas 0.00085..0.012, 1000 steps,
steps_offset 1, clip_sample false, set_alpha_to_one false; the rest are DDPMScheduler's defaults:
"leading" timestep spacing, variance_type fixed_small, no thresholding). DDIM uses eta 0.

No UNet: the "model" is a fixed function of the latent x and the timestep t, in float32,
    conditional(x, t)   = (0.8 - 0.3 s) x + (0.5 + s) P        s = t / 1000
    unconditional(x, t) = 0.6 x + 0.2 s Q - 0.1
with fixed tensors P and Q (stored). Each step guides as the published pipeline does,
    g = u + scale (c - u);  if rescale > 0: g = rescale_noise_cfg(g, c, rescale)
(rescale_noise_cfg: the per-sample standard deviations over all but the batch dimension, torch.std,
i.e. with Bessel's correction) and calls the scheduler's step. The DDPM step's noise is whatever
`randn_tensor` returns inside `step`; the script replaces that function with one that hands out
noise drawn beforehand and stores it, so the test needs no torch RNG. Every case stores x after
every step.

Repaint cases: the published pipeline's do_repaint on 8-bit images (Pillow GaussianBlur of the
mask, radius height // 100 made odd, float64 blend, truncation to uint8). The images come from a
fixed integer hash, not numpy's generators, so they do not depend on the numpy version. Not a test
itself; needs torch, diffusers, numpy and Pillow.
"""
import base64
import json
import os

import numpy as np
import torch
import diffusers
import PIL
from PIL import Image, ImageFilter
from diffusers import DDIMScheduler, DDPMScheduler
import diffusers.schedulers.scheduling_ddpm as scheduling_ddpm

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LeffaTrainingTests", "Fixtures", "scheduler.json")
M64 = (1 << 64) - 1
SD15 = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            steps_offset=1, clip_sample=False, set_alpha_to_one=False)


def uniform(seed, n):
    """n numbers in [0, 1): SplitMix64 of (seed, index)."""
    out = np.empty(n)
    for i in range(n):
        z = (seed * 0x9E3779B97F4A7C15 + i * 0xD6E8FEB86659FD93 + 0x5EED) & M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        out[i] = (z >> 11) / float(1 << 53)
    return out


def normal(seed, shape):
    """Standard normal float32 values (Box-Muller on the hash's uniforms)."""
    n = int(np.prod(shape))
    u1, u2 = uniform(seed, n) * (1 - 1e-12) + 1e-12, uniform(seed + 7919, n)
    return torch.tensor((np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)).reshape(shape), dtype=torch.float32)


def rescale_noise_cfg(cfg, cond, rescale):
    """Section 3.4 of arXiv 2305.08891, as diffusers and the published pipeline write it."""
    dims = list(range(1, cond.ndim))
    std_cond = cond.std(dim=dims, keepdim=True)
    std_cfg = cfg.std(dim=dims, keepdim=True)
    return rescale * (cfg * (std_cond / std_cfg)) + (1 - rescale) * cfg


def floats(t):
    """float32 values as the shortest decimals that read back to the same float32."""
    return [float(str(np.float32(v))) for v in t.detach().to(torch.float32).reshape(-1).tolist()]


def run_case(name, kind, prediction, steps, scale, rescale, seed, shape):
    cls = DDPMScheduler if kind == "ddpm" else DDIMScheduler
    # from_config, as from_pretrained: keys a class does not take (set_alpha_to_one for DDPM) are ignored.
    sched = cls.from_config(dict(SD15, prediction_type=prediction))
    sched.set_timesteps(steps)
    P, Q = normal(seed * 3 + 1, shape), normal(seed * 3 + 2, shape)
    x = normal(seed * 3, shape)
    x0 = x.clone()
    noises, after = [], []

    def fake_randn(shape_, generator=None, device=None, dtype=None, **_):
        e = normal(seed * 1000 + 17 + len(noises), tuple(shape_)).to(dtype or torch.float32)
        noises.append(floats(e))
        return e

    scheduling_ddpm.randn_tensor = fake_randn
    for t in sched.timesteps:
        s = torch.tensor(float(t) / 1000.0, dtype=torch.float32)
        c = (torch.tensor(0.8, dtype=torch.float32) - torch.tensor(0.3, dtype=torch.float32) * s) * x + (torch.tensor(0.5, dtype=torch.float32) + s) * P
        u = torch.tensor(0.6, dtype=torch.float32) * x + (torch.tensor(0.2, dtype=torch.float32) * s) * Q - torch.tensor(0.1, dtype=torch.float32)
        g = u + scale * (c - u)
        if rescale > 0:
            g = rescale_noise_cfg(g, c, rescale)
        if kind == "ddpm":
            x = sched.step(g, t, x, return_dict=False)[0]
        else:
            x = sched.step(g, t, x, eta=0.0, return_dict=False)[0]
        after.append(floats(x))
    # Each DDPM step with t > 0 draws exactly one noise tensor (all timesteps here are >= 1).
    assert kind != "ddpm" or len(noises) == len(after)
    return dict(name=name, scheduler=kind, prediction_type=prediction, steps=steps, guidance=scale,
                guidance_rescale=rescale, shape=list(shape), timesteps=[int(t) for t in sched.timesteps],
                x0=floats(x0), P=floats(P), Q=floats(Q), noise=noises, after=after)


def do_repaint(person, mask, result):
    """The published pipeline's repaint, on PIL images (person and result RGB, mask L)."""
    h = result.size[1]
    k = h // 100
    if k % 2 == 0:
        k += 1
    mask = mask.convert("RGB").filter(ImageFilter.GaussianBlur(k))
    m = np.array(mask) / 255
    out = np.array(person) * (1 - m) + np.array(result) * m
    return Image.fromarray(out.astype(np.uint8))


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).decode()


def repaint_case(name, h, w, seed):
    person = (uniform(seed, h * w * 3) * 256).astype(np.uint8).reshape(h, w, 3)
    generated = (uniform(seed + 1, h * w * 3) * 256).astype(np.uint8).reshape(h, w, 3)
    # A binary garment-like region (a rectangle and a disc) plus a few grey edge values.
    yy, xx = np.mgrid[0:h, 0:w]
    region = ((yy > h // 4) & (yy < 3 * h // 4) & (xx > w // 5) & (xx < 4 * w // 5)) | \
             ((yy - h // 5) ** 2 + (xx - w // 3) ** 2 < (min(h, w) // 4) ** 2)
    mask = np.where(region, 255, 0).astype(np.uint8)
    grey = uniform(seed + 2, h * w).reshape(h, w) < 0.03
    mask[grey] = (uniform(seed + 3, h * w).reshape(h, w)[grey] * 256).astype(np.uint8)
    out = do_repaint(Image.fromarray(person), Image.fromarray(mask, "L"), Image.fromarray(generated))
    k = h // 100
    return dict(name=name, height=h, width=w, blur_radius=k + 1 if k % 2 == 0 else k,
                person=b64(person), mask=b64(mask), generated=b64(generated), result=b64(np.array(out)))


def main():
    shape = (1, 4, 3, 2)
    cases = [
        # The published pipeline: DDPM, noise prediction, guidance 2.5 rescaled by 2.5.
        run_case("ddpm-epsilon-published", "ddpm", "epsilon", 10, 2.5, 2.5, 1, shape),
        # 30 steps: 1000 // 30 = 33, timesteps 958 ... 1 (not a divisor of 1000).
        run_case("ddpm-sample-30", "ddpm", "sample", 30, 1.5, 0.5, 2, shape),
        run_case("ddpm-v-norescale", "ddpm", "v_prediction", 8, 3.0, 0.0, 3, shape),
        run_case("ddim-epsilon-rescale", "ddim", "epsilon", 10, 2.5, 0.7, 4, shape),
        run_case("ddim-v-published-rescale", "ddim", "v_prediction", 7, 2.5, 2.5, 5, shape),
    ]
    repaints = [repaint_case("small", 20, 16, 11), repaint_case("tall", 230, 9, 12)]
    meta = dict(diffusers=diffusers.__version__, torch=torch.__version__, pillow=PIL.__version__, numpy=np.__version__,
                scheduler_config=SD15, model="c = (0.8 - 0.3 s) x + (0.5 + s) P; u = 0.6 x + 0.2 s Q - 0.1; s = t / 1000")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(dict(meta=meta, cases=cases, repaint=repaints), f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
