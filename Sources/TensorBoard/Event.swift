// The messages of an event file, encoded by hand with the field numbers of TensorBoard's
// event.proto and summary.proto: Event{wall_time 1, step 2, file_version 3, summary 5},
// Summary{value 1}, Summary.Value{tag 1, simple_value 2, image 4}, Summary.Image{height 1,
// width 2, colorspace 3, encoded_image_string 4}. Only scalars and PNG images: what the trainer logs.

/// One record of an event file.
public struct Event: Equatable, Sendable {
    public enum What: Equatable, Sendable {
        /// The first record of every file: "brain.Event:2" tells readers the format.
        case fileVersion(String)
        case summary([SummaryValue])
        /// A kind this writer never produces (graphs, session logs, …), read back from someone else's file.
        case other
    }

    /// Seconds since 1970.
    public var wallTime: Double
    public var step: Int64
    public var what: What

    public static let fileVersion = "brain.Event:2"

    public init(wallTime: Double, step: Int64, what: What) {
        self.wallTime = wallTime
        self.step = step
        self.what = what
    }

    /// Bytes as protobuf's serializer writes them: fields in number order, proto3 defaults (a zero
    /// time or step) left out, so a fixture written by TensorBoard's Python package compares byte for byte.
    public func encoded() -> [UInt8] {
        var w = ProtoWriter()
        if wallTime != 0 { w.double(1, wallTime) }
        if step != 0 { w.int(2, step) }
        switch what {
        case .fileVersion(let v): w.string(3, v)
        case .summary(let values):
            var s = ProtoWriter()
            for v in values { s.bytes(1, v.encoded()) }
            w.bytes(5, s.bytes)
        case .other: break
        }
        return w.bytes
    }

    public init(decoding bytes: ArraySlice<UInt8>) throws {
        var r = ProtoReader(bytes)
        wallTime = 0
        step = 0
        what = .other
        while let (field, value) = try r.next() {
            switch field {
            case 1: wallTime = value.double ?? 0
            case 2: step = value.int ?? 0
            case 3: what = .fileVersion(value.string ?? "")
            case 5:
                var s = ProtoReader(value.data ?? [])
                var values: [SummaryValue] = []
                while let (f, v) = try s.next() {
                    if f == 1, let d = v.data { values.append(try SummaryValue(decoding: d)) }
                }
                what = .summary(values)
            default: continue
            }
        }
    }
}

/// One tagged value of a summary.
public struct SummaryValue: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case scalar(Float)
        case image(EncodedImage)
        /// Histograms, audio, tensors: never written here.
        case other
    }

    public var tag: String
    public var kind: Kind

    public init(tag: String, kind: Kind) {
        self.tag = tag
        self.kind = kind
    }

    public static func scalar(_ tag: String, _ v: Float) -> SummaryValue { SummaryValue(tag: tag, kind: .scalar(v)) }

    /// The value is a oneof member, written even when zero; the tag is a plain string, left out when empty.
    func encoded() -> [UInt8] {
        var w = ProtoWriter()
        if !tag.isEmpty { w.string(1, tag) }
        switch kind {
        case .scalar(let v): w.float(2, v)
        case .image(let image): w.bytes(4, image.encoded())
        case .other: break
        }
        return w.bytes
    }

    init(decoding bytes: ArraySlice<UInt8>) throws {
        var r = ProtoReader(bytes)
        tag = ""
        kind = .other
        while let (field, value) = try r.next() {
            switch field {
            case 1: tag = value.string ?? ""
            case 2: kind = .scalar(value.float ?? .nan)
            case 4: kind = .image(try EncodedImage(decoding: value.data ?? []))
            default: continue
            }
        }
    }
}

/// An image as TensorBoard's legacy image summary holds it: the encoded file (PNG here) and its size.
public struct EncodedImage: Equatable, Sendable {
    public var height: Int
    public var width: Int
    /// 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
    public var colorspace: Int
    /// The image file's bytes.
    public var bytes: [UInt8]

    public init(height: Int, width: Int, colorspace: Int, bytes: [UInt8]) {
        self.height = height
        self.width = width
        self.colorspace = colorspace
        self.bytes = bytes
    }

    func encoded() -> [UInt8] {
        var w = ProtoWriter()
        if height != 0 { w.int(1, Int64(height)) }
        if width != 0 { w.int(2, Int64(width)) }
        if colorspace != 0 { w.int(3, Int64(colorspace)) }
        if !bytes.isEmpty { w.bytes(4, bytes) }
        return w.bytes
    }

    init(decoding message: ArraySlice<UInt8>) throws {
        var r = ProtoReader(message)
        (height, width, colorspace, bytes) = (0, 0, 0, [])
        while let (field, value) = try r.next() {
            switch field {
            case 1: height = Int(value.int ?? 0)
            case 2: width = Int(value.int ?? 0)
            case 3: colorspace = Int(value.int ?? 0)
            case 4: bytes = Array(value.data ?? [])
            default: continue
            }
        }
    }
}
