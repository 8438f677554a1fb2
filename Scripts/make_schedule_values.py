#!/usr/bin/env python3
"""Prints the numbers that Tests/LeffaDiffusionTests/NoiseScheduleTests.swift holds as literals: a few
entries of the betas and alphas_cumprod of SD1.5's DDPM schedule, and add_noise / get_velocity of a
small fixed sample, and the inference timesteps of a few step counts, as diffusers' DDPMScheduler
computes them.

Made with diffusers 0.42.1, torch 2.15.0, by this command from the package root:

    /tmp/ref/bin/python Scripts/make_schedule_values.py

The scheduler is configured as SD1.5's scheduler_config.json (and the published Leffa model, which
loads it): 1000 training steps, "scaled_linear" betas from 0.00085 to 0.012. diffusers builds the
schedule in float32 (linspace of the square roots, squared; a float32 cumulative product); each
value is printed as the exact double of that float32 (repr of a Python float), so the Swift literal
is the float32 diffusers holds. Not a test itself; needs torch and diffusers.
"""
import diffusers
import torch
from diffusers import DDPMScheduler

INDICES = [0, 1, 250, 499, 500, 513, 999]


def main():
    s = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                      beta_schedule="scaled_linear")
    assert s.betas.dtype == torch.float32 and s.alphas_cumprod.dtype == torch.float32
    print(f"# diffusers {diffusers.__version__}, torch {torch.__version__}")
    print("# (t, beta_t, alphas_cumprod_t)")
    for t in INDICES:
        print(f"({t}, {float(s.betas[t])!r}, {float(s.alphas_cumprod[t])!r}),")

    # add_noise and get_velocity (v = sqrt(a) eps - sqrt(1 - a) x0) of a (2, 3) batch, one
    # timestep per sample, in float32.
    x0 = torch.tensor([[1.0, -0.5, 0.25], [2.0, 0.0, -1.5]], dtype=torch.float32)
    noise = torch.tensor([[0.5, 2.0, -1.0], [-0.75, 1.25, 0.125]], dtype=torch.float32)
    timesteps = torch.tensor([10, 700])
    print("# x0", x0.flatten().tolist(), "noise", noise.flatten().tolist(), "timesteps", timesteps.tolist())
    print("# add_noise", [float(v) for v in s.add_noise(x0, noise, timesteps).flatten()])
    print("# get_velocity", [float(v) for v in s.get_velocity(x0, noise, timesteps).flatten()])

    # Inference timesteps with SD1.5's "leading" spacing and steps_offset 1, at step counts the
    # scheduler fixture (make_scheduler_fixture.py) does not cover.
    s = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                      beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading")
    for n in [1, 3, 999]:
        s.set_timesteps(n)
        t = s.timesteps.tolist()
        print(f"# timesteps({n}): {t if n < 10 else f'{t[:3]} ... {t[-3:]} ({len(t)} steps)'}")


if __name__ == "__main__":
    main()
