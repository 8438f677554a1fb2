// Image: 8-bit pixels as decoded from PNG/JPEG, interleaved (H, W, C) with C = 1 (gray, masks,
// label maps) or 3 (RGB), and the conversions to and from tensors (C, H, W) the model reads:
// pictures in [-1, 1], masks in {0, 1}. Not a codec (ImageIO.swift), not a resampler (Resize.swift).

import LeffaTensor

/// How 8-bit values map to floats.
public enum PixelRange: Sendable {
    /// v / 127.5 − 1: 0 → −1, 255 → 1 (what the VAE and densepose inputs expect).
    case signed
    /// v / 255: 0 → 0, 255 → 1.
    case unit
}

public struct Image: Equatable, Sendable {
    public let height: Int
    public let width: Int
    /// 1 (gray) or 3 (RGB).
    public let channels: Int
    /// Interleaved samples, row-major: index (y · width + x) · channels + c.
    public var pixels: [UInt8]

    public init(height: Int, width: Int, channels: Int, pixels: [UInt8]) {
        precondition(channels == 1 || channels == 3, "Image: channels must be 1 or 3, got \(channels)")
        precondition(
            height >= 0 && width >= 0 && pixels.count == height * width * channels,
            "Image: \(pixels.count) bytes do not fill \(height)×\(width)×\(channels)")
        self.height = height; self.width = width; self.channels = channels; self.pixels = pixels
    }

    /// Every pixel set to `fill` in every channel.
    public init(height: Int, width: Int, channels: Int, fill: UInt8 = 0) {
        self.init(
            height: height, width: width, channels: channels,
            pixels: [UInt8](repeating: fill, count: height * width * channels))
    }

    public var size: Size { Size(height: height, width: width) }

    public subscript(y: Int, x: Int, c: Int) -> UInt8 {
        get { pixels[(y * width + x) * channels + c] }
        set { pixels[(y * width + x) * channels + c] = newValue }
    }

    /// Gray ↔ RGB, as Pillow's convert("RGB") / convert("L"). Gray → RGB repeats the value;
    /// RGB → gray is ITU-R 601 luma in Pillow's fixed point, bit for bit:
    /// L = (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16.
    public func converted(toChannels c: Int) -> Image {
        precondition(c == 1 || c == 3, "Image.converted: channels must be 1 or 3, got \(c)")
        if c == channels { return self }
        let n = height * width
        var out = [UInt8](repeating: 0, count: n * c)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                if c == 3 {
                    for i in 0..<n { let v = src[i]; dst[3 * i] = v; dst[3 * i + 1] = v; dst[3 * i + 2] = v }
                } else {
                    for i in 0..<n {
                        let l =
                            19595 * Int(src[3 * i]) + 38470 * Int(src[3 * i + 1]) + 7471 * Int(src[3 * i + 2]) + 0x8000
                        dst[i] = UInt8(l >> 16)
                    }
                }
            }
        }
        return Image(height: height, width: width, channels: c, pixels: out)
    }

    // MARK: Tensors

    /// Planar floats (C, H, W) in `range`.
    public func tensor(_ range: PixelRange = .signed) -> Tensor {
        let t = Tensor(zeros: [channels, height, width])
        let (scale, shift): (Float, Float) = range == .signed ? (1 / 127.5, -1) : (1 / 255, 0)
        let n = height * width, c = channels, p = t.data
        pixels.withUnsafeBufferPointer { src in
            for i in 0..<n {
                for k in 0..<c { p[k * n + i] = Float(src[i * c + k]) * scale + shift }
            }
        }
        return t
    }

    /// (1, H, W) with 1 where channel 0 is at least `threshold` (masks are stored as 0/255;
    /// JPEG-compressed masks come back noisy, so the threshold sits half-way).
    public func maskTensor(threshold: UInt8 = 128) -> Tensor {
        let t = Tensor(zeros: [1, height, width])
        let n = height * width, c = channels, p = t.data
        pixels.withUnsafeBufferPointer { src in for i in 0..<n { p[i] = src[i * c] >= threshold ? 1 : 0 } }
        return t
    }

    /// From (C, H, W) or (1, C, H, W), C ∈ {1, 3}: values in `range` are mapped back to 0…255,
    /// rounded to nearest and clamped (what sample images and flow renderings need).
    public init(tensor t: Tensor, range: PixelRange = .signed) {
        let s = t.rank == 4 ? Array(t.shape.dropFirst()) : t.shape
        shapeCheck(
            s.count == 3 && (s[0] == 1 || s[0] == 3) && (t.rank == 3 || t.shape[0] == 1),
            "Image(tensor:)", t.shape, expected: "(C, H, W) or (1, C, H, W) with C = 1 or 3")
        let c = s[0], h = s[1], w = s[2], n = h * w, p = t.data
        var out = [UInt8](repeating: 0, count: n * c)
        out.withUnsafeMutableBufferPointer { dst in
            for k in 0..<c {
                for i in 0..<n {
                    let v = range == .signed ? (p[k * n + i] + 1) * 127.5 : p[k * n + i] * 255
                    dst[i * c + k] = UInt8(max(0, min(255, (v + 0.5).rounded(.down))))
                }
            }
        }
        self.init(height: h, width: w, channels: c, pixels: out)
    }
}

/// Height × width, the order the model and the datasets use (1024×768 = H×W).
public struct Size: Hashable, Sendable, CustomStringConvertible {
    public var height: Int
    public var width: Int
    public init(height: Int, width: Int) { self.height = height; self.width = width }
    /// width / height.
    public var aspect: Double { Double(width) / Double(height) }
    public var description: String { "\(height)×\(width)" }
}
