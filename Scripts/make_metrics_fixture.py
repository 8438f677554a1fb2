#!/usr/bin/env python3
"""Writes Tests/LeffaEvalTests/Fixtures/metrics.json: PSNR and SSIM values from scikit-image that
LeffaEval's ImageMetrics must reproduce (ImageMetricsTests reads the file).

Made with scikit-image 0.26.0, scipy 1.17.1, numpy 2.4.6, by this command from the package root:

    /tmp/ref/bin/python Scripts/make_metrics_fixture.py

What it makes: 4 cases, each a pair of (3, H, W) images quantised to 8 bit as real PNGs are
(stored as 8-bit integers q; the image value is q/127.5 - 1 in float32) and a binary (H, W) mask:
  - noisy      3x24x20  a textured image and the same plus noise; mask: a blob inside
  - shifted    3x32x24  shifted by (1, 2) pixels plus mild noise; mask: a blob touching the border
  - blurred    3x16x16  a 3x3 box blur of it; mask: a blob inside
  - meancolour 3x40x30  a constant image of the reference's mean colour (the "mean colour" baseline)
and for each: psnr (skimage peak_signal_noise_ratio, data_range 2), psnr_masked (numpy:
10 log10(4 / mean((a - b)^2) over mask pixels and channels)), ssim (skimage structural_similarity's
mean, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2, channel_axis=0),
ssim_masked (the mean, over mask pixels, of its full=True S map averaged over channels) and
ssim_map (that averaged S map, H*W values, row-major).

The images are cast from float32 to float64 before scikit-image sees them: skimage computes in the
input's float type, and in float32 (where uxx - ux^2 cancels) its S map is off by up to ~2e-6 per
pixel on these cases; the Swift code reads the same float32 values and computes in Double.
The pseudo-random numbers come from a fixed integer hash, not numpy's generators, so the images
do not depend on the numpy version. Not a test itself; needs numpy and scikit-image, not PyTorch.
"""
import json
import os

import numpy as np
import scipy
import skimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LeffaEvalTests", "Fixtures", "metrics.json")
M64 = (1 << 64) - 1


def uniform(seed, n):
    """n numbers in [0, 1): SplitMix64 of (seed, index), so they are the same on any numpy."""
    out = np.empty(n)
    for i in range(n):
        z = (seed * 0x9E3779B97F4A7C15 + i * 0xD6E8FEB86659FD93 + 0x5EED) & M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        out[i] = (z >> 11) / float(1 << 53)
    return out


def quantise(x):
    """Values in [-1, 1] to 8-bit integers, as a PNG stores them."""
    return np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8)


def as_float(q):
    """8-bit integers to the float32 values the Swift side reads (q/127.5 - 1)."""
    return (q.astype(np.float32) / np.float32(127.5) - np.float32(1)).astype(np.float32)


def texture(seed, C, H, W):
    """Sinusoids of different frequencies per channel, a bright rectangle (edges) and some noise."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.empty((C, H, W))
    for c in range(C):
        fx, fy, ph = 0.35 + 0.15 * c, 0.22 + 0.1 * c, 0.7 * c + seed
        img[c] = 0.45 * np.sin(fx * x + ph) * np.cos(fy * y - ph) + 0.2 * np.sin(0.09 * (x + 2 * y) + c)
    img[:, H // 4: H // 2, W // 3: 2 * W // 3] += 0.35
    img += 0.15 * (uniform(seed, C * H * W).reshape(C, H, W) - 0.5)
    return np.clip(img, -1, 1)


def blob(H, W, cy, cx, ry, rx, seed):
    """A wobbly ellipse as a 0/1 mask."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    ang = np.arctan2(y - cy, x - cx)
    wob = 1 + 0.15 * np.sin(3 * ang + seed)
    return ((((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2) <= wob ** 2).astype(np.uint8)


def box_blur(img):
    """3x3 mean with edge replication, per channel."""
    p = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
    H, W = img.shape[1:]
    return sum(p[:, i:i + H, j:j + W] for i in range(3) for j in range(3)) / 9


def make_cases():
    cases = []
    # noisy
    ref = texture(1, 3, 24, 20)
    test = ref + 0.2 * (uniform(11, ref.size).reshape(ref.shape) - 0.5)
    cases.append(("noisy", ref, test, blob(24, 20, 12, 9, 6, 5, 1)))
    # shifted (the blob touches the top and left borders)
    ref = texture(2, 3, 32, 24)
    test = np.roll(ref, (1, 2), axis=(1, 2)) + 0.06 * (uniform(12, ref.size).reshape(ref.shape) - 0.5)
    cases.append(("shifted", ref, test, blob(32, 24, 3, 4, 9, 8, 2)))
    # blurred
    ref = texture(3, 3, 16, 16)
    cases.append(("blurred", ref, box_blur(ref), blob(16, 16, 8, 7, 4, 5, 3)))
    # mean colour: a constant image per channel
    ref = texture(4, 3, 40, 30)
    test = np.broadcast_to(ref.mean(axis=(1, 2), keepdims=True), ref.shape)
    cases.append(("meancolour", ref, test, blob(40, 30, 22, 14, 10, 9, 4)))
    return cases


def metrics(a32, b32, mask):
    """Expected values for test a against reference b (float32 arrays, computed in float64)."""
    a, b = a32.astype(np.float64), b32.astype(np.float64)
    inside = mask.astype(bool)
    psnr = peak_signal_noise_ratio(b, a, data_range=2)
    mse_in = np.mean(((a - b) ** 2)[:, inside])
    psnr_masked = 10 * np.log10(4 / mse_in)
    mssim, S = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=2, channel_axis=0, full=True)
    smap = S.mean(axis=0)
    # The mean is the map cropped by (11 - 1)/2 = 5 on each side of each channel, channels averaged.
    assert abs(mssim - smap[5:-5, 5:-5].mean()) < 1e-12
    # What skimage gives on the float32 arrays themselves (it computes in float32 then): reported only.
    m32 = structural_similarity(a32, b32, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=2, channel_axis=0)
    return dict(psnr=float(psnr), psnr_masked=float(psnr_masked), ssim=float(mssim),
                ssim_masked=float(smap[inside].mean()), ssim_map=[float(v) for v in smap.ravel()]), abs(m32 - mssim)


def main():
    out = dict(source=f"Scripts/make_metrics_fixture.py, scikit-image {skimage.__version__}, scipy {scipy.__version__}, "
                      f"numpy {np.__version__}",
               image_value="q / 127.5 - 1 (float32) for the 8-bit integers q, (C, H, W) row-major",
               cases=[])
    for name, ref, test, mask in make_cases():
        qr, qt = quantise(ref), quantise(test)
        expected, f32 = metrics(as_float(qt), as_float(qr), mask)
        C, H, W = ref.shape
        out["cases"].append(dict(name=name, shape=[C, H, W], test=qt.ravel().tolist(), reference=qr.ravel().tolist(),
                                 mask=mask.ravel().tolist(), **expected))
        print(f"{name:10s} {C}x{H}x{W} mask {int(mask.sum())}/{H * W} psnr {expected['psnr']:.4f} "
              f"masked {expected['psnr_masked']:.4f} ssim {expected['ssim']:.6f} masked {expected['ssim_masked']:.6f} "
              f"(float32 skimage differs by {f32:.1e})")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
