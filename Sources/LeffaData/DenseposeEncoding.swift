// How a densepose image's pixels become the model's three densepose channels (`data.densepose`).
// Try-on sets ship RGB renderings (detectron2's visualiser), read like any picture: v/127.5 − 1.
// The published pose-transfer transform (Leffa's `prepare_densepose`) reads IUV images instead:
// channels R, G (U, V) / 255, channel B (the part index I, 0 = background, 1…24) / 24, each then
// ×2 − 1. Here: the decoding, the foreground it implies, and the check that an IUV file really
// holds part indices. Not the resizing (Sample.swift) nor the files (the dataset readers).

import LeffaTensor

public enum DenseposeEncoding: String, Sendable, CaseIterable {
    /// An RGB rendering (or a one-channel part-label image, coloured): v / 127.5 − 1.
    case rgb
    /// IUV: (U/255, V/255, I/24) × 2 − 1, as the published pose-transfer transform.
    case iuv

    /// The largest part index DensePose produces.
    public static let maxPartIndex: UInt8 = 24
}

/// (3, H, W) densepose input and (1, H, W) body foreground of a decoded densepose image. IUV:
/// like the published transform, a one-channel image is first repeated to RGB (Pillow's
/// convert("RGB")), the part index is the third channel, and the foreground is where it is
/// nonzero; a part index above 24 (an RGB rendering read as IUV, or JPEG noise) is an error
/// naming the file and the first such pixel.
public func denseposeInput(_ img: Image, encoding: DenseposeEncoding, path: String) throws -> (
    input: Tensor, foreground: Tensor
) {
    switch encoding {
    case .rgb:
        let rgb = img.channels == 1 ? colorizeDenseposeLabels(img) : img
        return (rgb.tensor(.signed), denseposeForeground(img))
    case .iuv:
        let iuv = img.converted(toChannels: 3)
        try validateIUV(iuv, path: path)
        let n = iuv.height * iuv.width
        let t = Tensor(zeros: [3, iuv.height, iuv.width]), fg = Tensor(zeros: [1, iuv.height, iuv.width])
        let p = t.data, f = fg.data
        iuv.pixels.withUnsafeBufferPointer { s in
            for i in 0..<n {
                p[i] = Float(s[3 * i]) / 255 * 2 - 1
                p[n + i] = Float(s[3 * i + 1]) / 255 * 2 - 1
                p[2 * n + i] = Float(s[3 * i + 2]) / 24 * 2 - 1
                f[i] = s[3 * i + 2] != 0 ? 1 : 0
            }
        }
        return (t, fg)
    }
}

/// Throws unless every part index (third channel) of an RGB IUV image is 0…24, naming the file
/// and the first pixel (row-major) that is not.
func validateIUV(_ iuv: Image, path: String) throws {
    precondition(iuv.channels == 3, "validateIUV: expected 3 channels, got \(iuv.channels)")
    let n = iuv.height * iuv.width
    guard let i = (0..<n).first(where: { iuv.pixels[3 * $0 + 2] > DenseposeEncoding.maxPartIndex }) else { return }
    throw DataError(
        .corrupt, path: path, field: SampleField.densepose,
        reason:
            "third channel (part index I) is \(iuv.pixels[3 * i + 2]) at pixel (y \(i / iuv.width), x \(i % iuv.width)); an IUV image holds 0…\(DenseposeEncoding.maxPartIndex) there",
        hint: "store IUV images as PNG (JPEG changes the indices); for RGB renderings set data.densepose: rgb")
}
