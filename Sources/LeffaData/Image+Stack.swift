// Images side by side or one above the other, 2 white pixels apart: the rows of validation
// samples, flow strips and contact sheets. Gray images are shown as RGB.

extension Image {
    /// Left to right, top-aligned; the result is as tall as the tallest image.
    public static func hstack(_ images: [Image], gap: Int = 2) -> Image {
        guard !images.isEmpty else { return Image(height: 1, width: 1, channels: 3, fill: 255) }
        let rgb = images.map { $0.converted(toChannels: 3) }
        let h = rgb.map(\.height).max()!, w = rgb.reduce(0) { $0 + $1.width } + gap * (rgb.count - 1)
        var px = [UInt8](repeating: 255, count: h * w * 3)
        var x0 = 0
        for im in rgb {
            for y in 0..<im.height {
                for x in 0..<im.width {
                    for c in 0..<3 { px[(y * w + x0 + x) * 3 + c] = im.pixels[(y * im.width + x) * 3 + c] }
                }
            }
            x0 += im.width + gap
        }
        return Image(height: h, width: w, channels: 3, pixels: px)
    }

    /// Top to bottom, left-aligned; the result is as wide as the widest image.
    public static func vstack(_ images: [Image], gap: Int = 2) -> Image {
        guard !images.isEmpty else { return Image(height: 1, width: 1, channels: 3, fill: 255) }
        let rgb = images.map { $0.converted(toChannels: 3) }
        let w = rgb.map(\.width).max()!, h = rgb.reduce(0) { $0 + $1.height } + gap * (rgb.count - 1)
        var px = [UInt8](repeating: 255, count: h * w * 3)
        var y0 = 0
        for im in rgb {
            for y in 0..<im.height {
                for x in 0..<im.width {
                    for c in 0..<3 { px[((y0 + y) * w + x) * 3 + c] = im.pixels[(y * im.width + x) * 3 + c] }
                }
            }
            y0 += im.height + gap
        }
        return Image(height: h, width: w, channels: 3, pixels: px)
    }
}
