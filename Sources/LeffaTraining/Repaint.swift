// The published pipeline's `repaint` option (virtual try-on): the generated image is kept only in
// the masked region, feathered by a Gaussian blur of the mask, and everything else is the original
// person's pixels, so the output differs from the input only where the garment goes. Computed on
// 8-bit images exactly as the published code does with Pillow and numpy: blur standard deviation
// height / 100 (integer division) made odd, person·(1 − m) + generated·m in double precision with
// m = blurred mask / 255, truncated to 8 bit. Not part of the sampling loop: it acts on the image.
import LeffaTensor
import LeffaRunFormat
import LeffaData

public enum Repaint {
    /// The published blur radius: height / 100, plus 1 when even (so at least 1).
    public static func blurRadius(height: Int) -> Int {
        let k = height / 100
        return k % 2 == 0 ? k + 1 : k
    }

    /// `generated` pasted into `person` where `mask` (1 channel, 255 = generated) says, all three
    /// the same size.
    public static func apply(person: Image, mask: Image, generated: Image) -> Image {
        precondition(
            person.size == generated.size && mask.size == person.size && person.channels == 3
                && generated.channels == 3,
            "Repaint.apply: person \(person.size)×\(person.channels), mask \(mask.size), generated \(generated.size)×\(generated.channels)"
        )
        let m = mask.converted(toChannels: 1).gaussianBlurred(radius: Float(blurRadius(height: person.height)))
        var out = [UInt8](repeating: 0, count: person.pixels.count)
        for i in 0..<person.height * person.width {
            let w = Double(m.pixels[i]) / 255
            for c in 0..<3 {
                let k = 3 * i + c
                out[k] = UInt8(Double(person.pixels[k]) * (1 - w) + Double(generated.pixels[k]) * w)
            }
        }
        return Image(height: person.height, width: person.width, channels: 3, pixels: out)
    }

    /// The same from the sampler's conditions: the person (1, 3, H, W) or (3, H, W) in [−1, 1] and
    /// the mask (…, 1, H, W) in [0, 1], both as the model saw them.
    public static func apply(person: Tensor, mask: Tensor, generated: Image) -> Image {
        apply(person: Image(tensor: person), mask: Image(tensor: mask, range: .unit), generated: generated)
    }
}

extension SampleConditions {
    /// `generated` repainted into this try-on's person image (see Repaint).
    public func repainted(_ generated: Image) -> Image {
        Repaint.apply(person: person, mask: mask, generated: generated)
    }
}
