// An image size written "HxW" (height × width, e.g. 512x384): the one parser for configs, command
// lines and benchmarks, so every place accepts and refuses the same spellings.
public struct ImageSize: Equatable, Sendable, CustomStringConvertible {
    public var height: Int, width: Int
    public init(height: Int, width: Int) { self.height = height; self.width = width }

    /// "512x384" (case and spaces around the numbers ignored); nil unless two positive integers.
    public init?(parsing text: String) {
        let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, let h = Int(parts[0].trimmingCharacters(in: .whitespaces)),
            let w = Int(parts[1].trimmingCharacters(in: .whitespaces)), h > 0, w > 0
        else { return nil }
        height = h; width = w
    }

    public var description: String { "\(height)x\(width)" }
}
