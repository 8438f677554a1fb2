// A synthetic try-on set with known ground-truth flow, in the VITON-HD layout, for tests, for the
// main job (a model must learn it in minutes) and for measuring whether attention flows learn the
// truth. Each sample is a textured garment on a white cloth image and a simple person (background,
// head, arms, legs, torso) wearing that garment through a KNOWN smooth warp: a random
// scale/rotation/shift plus a low-frequency sinusoidal displacement.
//
// The garment texture has structure at two scales, as real garments do: two colour panels split
// by a random line (colour blocking: what a model gets right first), stripes or checks a few
// pixels fine on the light panel, and a block of glyph-like "print" on the dark one (the fine
// detail Leffa is about: stripes and text are the paper's failure cases).
//
// Written under <out>:
//   train_pairs.txt                       "NAME.png NAME.png" (or .jpg with format .jpeg)
//   train/image/NAME.*, train/cloth/NAME.*   person and garment (PNG or real JPEG content)
//   train/cloth-mask/NAME.png             garment region of the cloth image (0/255)
//   train/agnostic-mask/NAME_mask.png     garment region of the person, dilated by H/48 px
//   train/image-densepose/NAME.*          body parts coloured like DensePose part labels
//   train/image-parse-v3/NAME.png         LIP-style labels, palette PNG (5 = garment)
//   train/flow/NAME.safetensors           "flow" (H, W, 2), "valid" (H, W): GroundTruthFlow.swift
//   test_pairs.txt, test/…                with `testCount` > 0: the held-out split, the same files;
//                                         its pairs file names another test garment in the second
//                                         column, as VITON-HD's (the unpaired setting)
//   synthetic.json                        the parameters
// Held out: test samples are drawn from their own random stream, so every test garment shape,
// texture, colour set, print, body and warp is a new draw that no training sample shares.
// The person's garment pixels ARE the cloth image bilinearly sampled (align_corners=True) at the
// flow, rounded to 8 bits, so with PNG the flow reproduces them to within half a grey level.
// Everything is a function of (seed, split, sample index) through CounterRNG: same seed, same bytes.
// Not photorealistic, and not a pose-transfer set.
//
// Two textures (`SyntheticTexture`): `.pattern` (the default, above) and `.ramp`, a smooth colour
// ramp over the garment along two random orthogonal colour directions, so every garment point has
// its own colour. The fine pattern makes a photometric warp loss (Leffa's) a colour-matching
// objective with minima everywhere: a free flow optimised from the centre lowers it 7× without
// moving towards the truth. With the ramp its minimum is the true flow and gradient descent gets
// there, which is what measuring whether the loss teaches attention the flow needs.

import Foundation
import LeffaTensor

/// The garment texture of the synthetic set (see the file header).
public enum SyntheticTexture: String, Sendable, CaseIterable {
    /// Stripes or checks and a glyph print, a few pixels fine.
    case pattern
    /// A smooth two-axis colour ramp: colour determines position.
    case ramp
}

/// Writes `count` training samples and `testCount` held-out test samples of `height`×`width`
/// (see the file header) and returns the training names. `format` is the content and extension
/// of person, cloth and densepose images; masks and label maps are always PNG. Lossless `.png` is
/// the default: with `.jpeg` the flow still holds but the pixels carry compression error. The
/// texture changes only the garment's colours: shapes, warps and flows are the same for a seed.
@discardableResult
public func generateSynthetic(
    out: URL, count: Int, testCount: Int = 0, height: Int, width: Int, seed: UInt64,
    format: ImageFormat = .png, texture: SyntheticTexture = .pattern
) throws -> [String] {
    precondition(
        count >= 0 && testCount >= 0 && height >= 16 && width >= 12,
        "generateSynthetic: need counts ≥ 0 and at least 16×12 pixels, got \(count) + \(testCount), \(height)×\(width)")
    let ext = format == .png ? "png" : "jpg"
    func names(_ n: Int) -> [String] { (0..<n).map { String(format: "%06d_00", $0) } }
    let train = names(count), test = names(testCount)
    try writeSplit(
        out: out, split: "train", names: train, seed: seed, height: height, width: width, format: format,
        texture: texture)
    let pairs = train.map { "\($0).\(ext) \($0).\(ext)\n" }.joined()
    try ImageIO.writeBytes(Array(pairs.utf8), to: out.appendingPathComponent("train_pairs.txt"))
    if testCount > 0 {
        try writeSplit(
            out: out, split: "test", names: test, seed: seed, height: height, width: width, format: format,
            texture: texture)
        // VITON-HD's test list pairs each person with another garment (unpaired); paired
        // evaluation reads the person's own garment.
        let lines = test.indices.map { "\(test[$0]).\(ext) \(test[($0 + 1) % test.count]).\(ext)\n" }.joined()
        try ImageIO.writeBytes(Array(lines.utf8), to: out.appendingPathComponent("test_pairs.txt"))
    }
    let meta =
        "{\"generator\": \"leffa-synthetic\", \"version\": 2, \"seed\": \(seed), \"count\": \(count), \"test_count\": \(testCount), "
        + "\"height\": \(height), \"width\": \(width), \"format\": \"\(format.rawValue)\""
        + (texture == .pattern ? "" : ", \"texture\": \"\(texture.rawValue)\"") + "}\n"
    try ImageIO.writeBytes(Array(meta.utf8), to: out.appendingPathComponent("synthetic.json"))
    return train
}

/// The samples of one split, in parallel; the first failure is reported by name.
func writeSplit(
    out: URL, split: String, names: [String], seed: UInt64, height: Int, width: Int,
    format: ImageFormat, texture: SyntheticTexture
) throws {
    let ext = format == .png ? "png" : "jpg"
    let dir = out.appendingPathComponent(split)
    for sub in ["image", "cloth", "cloth-mask", "agnostic-mask", "image-densepose", "image-parse-v3", "flow"] {
        try FileManager.default.createDirectory(at: dir.appendingPathComponent(sub), withIntermediateDirectories: true)
    }
    var failures = [String?](repeating: nil, count: names.count)
    failures.withUnsafeMutableBufferPointer { fail in
        let f = fail
        Parallel.for(names.count, grain: 1) { range in
            for i in range {
                do {
                    let s = SyntheticSample(
                        seed: seed, index: i, height: height, width: width, texture: texture, heldOut: split == "test")
                    try s.write(dir: dir, name: names[i], ext: ext, format: format)
                } catch { f[i] = "\(error)" }
            }
        }
    }
    if let (i, e) = failures.enumerated().first(where: { $0.element != nil }).map({ ($0.offset, $0.element!) }) {
        throw DataError(.unreadable, path: dir.path, field: "synthetic sample \(names[i])", reason: e)
    }
}

/// Bilinear sample of interleaved 8-bit `pixels` at normalised (x, y), align_corners=True
/// (−1/+1 = centres of the first/last pixels), zero outside — `grid_sample`'s convention.
@inline(__always)
func sampleBilinear(
    _ pixels: UnsafePointer<UInt8>, height h: Int, width w: Int, channels c: Int,
    x: Float, y: Float, into out: UnsafeMutablePointer<Float>
) {
    let u = (x + 1) / 2 * Float(w - 1), v = (y + 1) / 2 * Float(h - 1)
    let x0 = Int(u.rounded(.down)), y0 = Int(v.rounded(.down))
    let fx = u - Float(x0), fy = v - Float(y0)
    for k in 0..<c { out[k] = 0 }
    for (yy, wy) in [(y0, 1 - fy), (y0 + 1, fy)] where yy >= 0 && yy < h && wy != 0 {
        for (xx, wx) in [(x0, 1 - fx), (x0 + 1, fx)] where xx >= 0 && xx < w && wx != 0 {
            let p = pixels + (yy * w + xx) * c
            for k in 0..<c { out[k] += wy * wx * Float(p[k]) }
        }
    }
}

/// Deterministic draws for one sample: value k of stream (seed, index).
struct SampleRandom {
    let key: UInt64
    var counter: UInt64 = 0
    /// Training and held-out samples come from different streams: no test draw repeats a training one.
    init(seed: UInt64, index: Int, heldOut: Bool = false) {
        key = CounterRNG.key(seed, heldOut ? 0x7E57 : 0x5A17, UInt64(index))
    }
    mutating func uniform(_ lo: Float, _ hi: Float) -> Float {
        counter += 1
        return lo + (hi - lo) * CounterRNG.uniform(key, counter)
    }
    mutating func int(_ n: Int) -> Int { counter += 1; return Int(CounterRNG.bits(key, counter) % UInt64(n)) }
    mutating func bits() -> UInt64 { counter += 1; return CounterRNG.bits(key, counter) }
}

/// HSV (all in [0, 1]) to 8-bit RGB.
func hsv(_ h: Float, _ s: Float, _ v: Float) -> (UInt8, UInt8, UInt8) {
    let hh = (h - h.rounded(.down)) * 6, i = Int(hh) % 6, f = hh - Float(Int(hh))
    let p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f))
    let (r, g, b): (Float, Float, Float) = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (UInt8((r * 255).rounded()), UInt8((g * 255).rounded()), UInt8((b * 255).rounded()))
}

/// Body parts of the synthetic person, with the labels they get in each map.
enum BodyPart: Int {
    case background, head, neck, torso, leftArm, rightArm, legs
    /// DensePose-like part index (coloured by `colorizeDenseposeLabels`).
    var denseLabel: UInt8 { [0, 23, 23, 2, 15, 16, 8][rawValue] }
    /// LIP label as in VITON-HD's image-parse-v3 (13 face, 10 neck/skin, 14/15 arms, 9 pants).
    var parseLabel: UInt8 { [0, 13, 10, 10, 14, 15, 9][rawValue] }
}

struct SyntheticSample {
    let h: Int, w: Int
    // Garment shape in cloth normalised coordinates.
    let bodyHalfWidth: Float, top: Float, bottom: Float, sleeveHalfSpan: Float, sleeveBottom: Float, neckRadius: Float
    // Texture: two panels split by the line n·(x, y) = offset (colour blocking), stripes or
    // checks of `period` pixels on the light panel, glyphs on the dark one.
    let texture: SyntheticTexture
    let pattern: Int, angle: Float, period: Float
    let splitAngle: Float, splitOffset: Float
    let color1: (UInt8, UInt8, UInt8), color2: (UInt8, UInt8, UInt8), color3: (UInt8, UInt8, UInt8),
        ink: (UInt8, UInt8, UInt8)
    let glyphs: [UInt16], glyphScale: Int
    let printBox: (x0: Float, x1: Float, y0: Float, y1: Float)
    // Person.
    let background: (UInt8, UInt8, UInt8), skin: (UInt8, UInt8, UInt8), pants: (UInt8, UInt8, UInt8)
    let cx: Float
    /// Horizontal size of the body (and so of the garment on it) relative to a slim figure.
    let build: Float
    // Warp person → cloth: q = R(θ)·((p − c) / s) + displacement(p).
    let centerX: Float, centerY: Float, scaleX: Float, scaleY: Float, theta: Float
    let ampX: Float, ampY: Float, freqX: Float, freqY: Float, phaseX: Float, phaseY: Float
    // Ramp texture: colour = 127.5 + 85·(x·u + y·v), u ⟂ v unit RGB directions.
    let rampU: (Float, Float, Float), rampV: (Float, Float, Float)

    init(seed: UInt64, index: Int, height: Int, width: Int, texture: SyntheticTexture = .pattern, heldOut: Bool = false)
    {
        h = height; w = width; self.texture = texture
        var r = SampleRandom(seed: seed, index: index, heldOut: heldOut)
        bodyHalfWidth = r.uniform(0.5, 0.65); top = r.uniform(-0.8, -0.65); bottom = r.uniform(0.75, 0.9)
        sleeveHalfSpan = r.uniform(0.8, 0.92); sleeveBottom = r.uniform(-0.4, -0.15); neckRadius = r.uniform(0.14, 0.24)
        pattern = r.int(2)
        angle = r.uniform(0, .pi)
        // A few pixels, whatever the size: the detail sits at the pixel scale of the images.
        period = max(3, Float(width) * r.uniform(0.12, 0.2))
        splitAngle = r.uniform(-0.6, 0.6); splitOffset = r.uniform(-0.25, 0.35)
        let hue = r.uniform(0, 1)
        color1 = hsv(hue, r.uniform(0.4, 0.8), r.uniform(0.8, 0.97))
        color2 = hsv(hue + r.uniform(0.35, 0.65), r.uniform(0.5, 0.9), r.uniform(0.15, 0.4))
        color3 = hsv(hue + r.uniform(-0.15, 0.15), r.uniform(0.6, 1), r.uniform(0.4, 0.6))
        ink = hsv(hue + r.uniform(0.2, 0.35), r.uniform(0.1, 0.4), 0.97)
        glyphs = (0..<8).map { _ in UInt16(truncatingIfNeeded: r.bits()) & 0x7FFF | 0x0101 }
        glyphScale = max(1, width / 64)
        let bx = r.uniform(-0.4, -0.1), by = r.uniform(0.35, 0.5)
        printBox = (bx, bx + r.uniform(0.5, 0.7), by, by + r.uniform(0.25, 0.35))
        background = hsv(r.uniform(0, 1), r.uniform(0.05, 0.2), r.uniform(0.85, 0.97))
        skin = hsv(r.uniform(0.03, 0.1), r.uniform(0.3, 0.6), r.uniform(0.55, 0.9))
        pants = hsv(r.uniform(0, 1), r.uniform(0.3, 0.7), r.uniform(0.2, 0.5))
        cx = r.uniform(-0.06, 0.06)
        build = r.uniform(1.2, 1.4)
        centerX = cx + r.uniform(-0.03, 0.03); centerY = r.uniform(-0.06, 0)
        scaleX = 0.47 * build * r.uniform(0.95, 1.05); scaleY = r.uniform(0.5, 0.56); theta = r.uniform(-0.12, 0.12)
        ampX = r.uniform(0.02, 0.05); ampY = r.uniform(0.02, 0.05)
        freqX = r.uniform(0.3, 1.0); freqY = r.uniform(0.3, 1.0)
        phaseX = r.uniform(0, 2 * .pi); phaseY = r.uniform(0, 2 * .pi)
        // Drawn last, so the pattern texture's samples are what they are without the ramp.
        func unit(_ a: (Float, Float, Float)) -> (Float, Float, Float) {
            let n = max(1e-3, (a.0 * a.0 + a.1 * a.1 + a.2 * a.2).squareRoot())
            return (a.0 / n, a.1 / n, a.2 / n)
        }
        let u = unit((r.uniform(-1, 1), r.uniform(-1, 1), r.uniform(-1, 1)))
        let a = (r.uniform(-1, 1), r.uniform(-1, 1), r.uniform(-1, 1))
        let d = a.0 * u.0 + a.1 * u.1 + a.2 * u.2
        rampU = u; rampV = unit((a.0 - d * u.0, a.1 - d * u.1, a.2 - d * u.2))
    }

    /// Normalised coordinate (align_corners=True) of pixel index i along an axis of n pixels.
    @inline(__always) func norm(_ i: Int, _ n: Int) -> Float { Float(2 * i) / Float(n - 1) - 1 }

    func insideGarment(_ x: Float, _ y: Float) -> Bool {
        let ax = abs(x)
        let inBody = ax <= bodyHalfWidth && y >= top && y <= bottom
        let inSleeves = ax <= sleeveHalfSpan && y >= top && y <= sleeveBottom + (sleeveHalfSpan - ax) * 0.4
        let dy = (y - top) * 1.4
        let inNeck = x * x + dy * dy < neckRadius * neckRadius
        return (inBody || inSleeves) && !inNeck
    }

    /// The texture at cloth pixel (i, j).
    func texture(_ i: Int, _ j: Int) -> (UInt8, UInt8, UInt8) {
        let x = Float(j), y = Float(i)
        let nx = norm(j, w), ny = norm(i, h)
        if texture == .ramp {
            func level(_ u: Float, _ v: Float) -> UInt8 {
                UInt8(min(255, max(0, (127.5 + 85 * (nx * u + ny * v)).rounded())))
            }
            return (level(rampU.0, rampV.0), level(rampU.1, rampV.1), level(rampU.2, rampV.2))
        }
        let dark = ny * cos(splitAngle) - nx * sin(splitAngle) > splitOffset
        if dark {
            // Glyph "print": 3×5 bitmaps in cells of 4×6 (times glyphScale) pixels.
            if nx >= printBox.x0 && nx <= printBox.x1 && ny >= printBox.y0 && ny <= printBox.y1 {
                let cw = 4 * glyphScale, ch = 6 * glyphScale
                let gx = j / cw, gy = i / ch, lx = (j % cw) / glyphScale, ly = (i % ch) / glyphScale
                if lx < 3 && ly < 5 {
                    let g = glyphs[(gx * 7 + gy * 3) % glyphs.count]
                    if g >> UInt16(ly * 3 + lx) & 1 == 1 { return ink }
                }
            }
            return color2
        }
        let on: Bool
        if pattern == 0 {
            let t = (x * cos(angle) + y * sin(angle)) / period
            on = t - t.rounded(.down) < 0.5
        } else {
            on = (Int((x / period).rounded(.down)) + Int((y / period).rounded(.down))) & 1 == 0
        }
        return on ? color1 : color3
    }

    /// Person normalised → cloth normalised.
    func warp(_ x: Float, _ y: Float) -> (Float, Float) {
        let dx = (x - centerX) / scaleX, dy = (y - centerY) / scaleY
        let c = cos(theta), s = sin(theta)
        return (
            c * dx - s * dy + ampX * sin(2 * .pi * freqX * y + phaseX),
            s * dx + c * dy + ampY * sin(2 * .pi * freqY * x + phaseY)
        )
    }

    func bodyPart(_ x: Float, _ y: Float) -> BodyPart {
        let b = build, u = (x - cx) / b
        let hx = (x - cx) / 0.16, hy = (y + 0.74) / 0.2
        if hx * hx + hy * hy <= 1 { return .head }
        if abs(x - cx) < 0.07 && y > -0.6 && y < -0.45 { return .neck }
        if abs(u) < 0.34 && y >= -0.5 && y <= 0.45 { return .torso }
        if abs(u + 0.43) < 0.08 && y >= -0.48 && y <= 0.35 { return .leftArm }
        if abs(u - 0.43) < 0.08 && y >= -0.48 && y <= 0.35 { return .rightArm }
        if abs(abs(u) - 0.14) < 0.11 && y > 0.45 { return .legs }
        return .background
    }

    func write(dir: URL, name: String, ext: String, format: ImageFormat) throws {
        let n = h * w
        // Cloth image and its garment mask.
        var cloth = Image(height: h, width: w, channels: 3, fill: 255)
        var clothMask = [UInt8](repeating: 0, count: n)
        for i in 0..<h {
            for j in 0..<w where insideGarment(norm(j, w), norm(i, h)) {
                clothMask[i * w + j] = 255
                let c = texture(i, j)
                cloth[i, j, 0] = c.0; cloth[i, j, 1] = c.1; cloth[i, j, 2] = c.2
            }
        }
        // Person, densepose labels, parsing labels, flow.
        var person = Image(height: h, width: w, channels: 3)
        var dense = Image(height: h, width: w, channels: 1), parse = Image(height: h, width: w, channels: 1)
        let flow = Tensor(zeros: [h, w, 2]), valid = Tensor(zeros: [h, w])
        var sample = [Float](repeating: 0, count: 3)
        var maskValue: Float = 0
        cloth.pixels.withUnsafeBufferPointer { cp in
            clothMask.withUnsafeBufferPointer { mp in
                for i in 0..<h {
                    for j in 0..<w {
                        let x = norm(j, w), y = norm(i, h)
                        let part = bodyPart(x, y)
                        let base: (UInt8, UInt8, UInt8) =
                            part == .background ? background : part == .legs ? pants : skin
                        person[i, j, 0] = base.0; person[i, j, 1] = base.1; person[i, j, 2] = base.2
                        dense[i, j, 0] = part.denseLabel
                        parse[i, j, 0] = part.parseLabel
                        let q = warp(x, y)
                        flow.data[2 * (i * w + j)] = q.0
                        flow.data[2 * (i * w + j) + 1] = q.1
                        sampleBilinear(
                            mp.baseAddress!, height: h, width: w, channels: 1, x: q.0, y: q.1, into: &maskValue)
                        if maskValue >= 127.5 {
                            valid.data[i * w + j] = 1
                            parse[i, j, 0] = 5
                            sampleBilinear(
                                cp.baseAddress!, height: h, width: w, channels: 3, x: q.0, y: q.1, into: &sample)
                            for k in 0..<3 { person[i, j, k] = UInt8(min(255, max(0, sample[k].rounded()))) }
                        }
                    }
                }
            }
        }
        let validMask = valid.buffer.map { $0 > 0 ? UInt8(1) : 0 }
        let agnostic = dilateMask(validMask, height: h, width: w, radius: max(1, Int((Float(h) / 48).rounded())))

        let q = 95
        try ImageIO.write(cloth, to: dir.appendingPathComponent("cloth/\(name).\(ext)"), format: format, quality: q)
        try ImageIO.write(person, to: dir.appendingPathComponent("image/\(name).\(ext)"), format: format, quality: q)
        try ImageIO.write(
            colorizeDenseposeLabels(dense), to: dir.appendingPathComponent("image-densepose/\(name).\(ext)"),
            format: format, quality: q)
        try ImageIO.write(
            Image(height: h, width: w, channels: 1, pixels: clothMask),
            to: dir.appendingPathComponent("cloth-mask/\(name).png"))
        try ImageIO.write(
            Image(height: h, width: w, channels: 1, pixels: agnostic.map { $0 * 255 }),
            to: dir.appendingPathComponent("agnostic-mask/\(name)_mask.png"))
        try ImageIO.writeBytes(
            ImageIO.encodePalettePNG(indices: parse, palette: lipPalette),
            to: dir.appendingPathComponent("image-parse-v3/\(name).png"))
        try GroundTruthFlow(flow: flow, valid: valid).write(to: dir.appendingPathComponent("flow/\(name).safetensors"))
    }
}

/// Colours for the 20 LIP labels (any distinct colours do; readers use the indices).
let lipPalette: [(UInt8, UInt8, UInt8)] = (0..<20).map { l in
    l == 0 ? (0, 0, 0) : hsv(Float(l) / 20, 0.8, 0.9)
}
