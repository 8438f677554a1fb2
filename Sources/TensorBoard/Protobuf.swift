// The protocol-buffer wire format, only as far as event files need it: varints, 64- and 32-bit
// fixed fields and length-delimited fields, written and read by field number. No schema, no
// generated code: Event.swift spells the few messages by hand.

/// How a field's value is laid out after its key.
public enum WireType: UInt8, Sendable {
    case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5
}

/// Appends fields to a message. Writes what it is given: leaving proto3 defaults out (as
/// protobuf's own serializers do, so the bytes match theirs) is the caller's choice.
public struct ProtoWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    public init() {}

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ type: WireType) { varint(UInt64(field) << 3 | UInt64(type.rawValue)) }

    /// int32, int64 and uint fields; negative values take ten bytes (two's complement), as protobuf's.
    public mutating func int(_ field: Int, _ v: Int64) {
        key(field, .varint)
        varint(UInt64(bitPattern: v))
    }

    public mutating func double(_ field: Int, _ v: Double) {
        key(field, .fixed64)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func float(_ field: Int, _ v: Float) {
        key(field, .fixed32)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// bytes, string and embedded-message fields.
    public mutating func bytes<C: Collection>(_ field: Int, _ v: C) where C.Element == UInt8 {
        key(field, .lengthDelimited)
        varint(UInt64(v.count))
        bytes.append(contentsOf: v)
    }

    public mutating func string(_ field: Int, _ s: String) { bytes(field, Array(s.utf8)) }
}

/// A message's bytes are not valid protobuf (cut short, or a wire type events never use).
public struct ProtoError: Error, CustomStringConvertible {
    public let description: String
}

/// Reads a message's fields in order; unknown fields are the caller's to skip.
public struct ProtoReader {
    public enum Value {
        case varint(UInt64), fixed64(UInt64), fixed32(UInt32), bytes(ArraySlice<UInt8>)

        /// A varint field as a signed integer (int32/int64 two's complement).
        public var int: Int64? { if case .varint(let v) = self { Int64(bitPattern: v) } else { nil } }
        public var double: Double? { if case .fixed64(let v) = self { Double(bitPattern: v) } else { nil } }
        public var float: Float? { if case .fixed32(let v) = self { Float(bitPattern: v) } else { nil } }
        public var data: ArraySlice<UInt8>? { if case .bytes(let b) = self { b } else { nil } }
        public var string: String? { data.map { String(decoding: $0, as: UTF8.self) } }
    }

    let bytes: ArraySlice<UInt8>
    var at: Int

    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        at = bytes.startIndex
    }

    mutating func varint() throws -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard at < bytes.endIndex, shift < 64 else { throw ProtoError(description: "varint cut short at \(at)") }
            let b = bytes[at]
            at += 1
            v |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return v }
            shift += 7
        }
    }

    mutating func fixed(_ n: Int) throws -> UInt64 {
        guard bytes.endIndex - at >= n else { throw ProtoError(description: "\(n)-byte field cut short at \(at)") }
        var v: UInt64 = 0
        for k in 0..<n { v |= UInt64(bytes[at + k]) << (8 * UInt64(k)) }
        at += n
        return v
    }

    /// The next field, or nil at the end of the message.
    public mutating func next() throws -> (field: Int, value: Value)? {
        guard at < bytes.endIndex else { return nil }
        let key = try varint()
        let field = Int(key >> 3)
        switch WireType(rawValue: UInt8(key & 7)) {
        case .varint: return (field, .varint(try varint()))
        case .fixed64: return (field, .fixed64(try fixed(8)))
        case .fixed32: return (field, .fixed32(UInt32(try fixed(4))))
        case .lengthDelimited:
            let n = try varint()
            guard n <= UInt64(bytes.endIndex - at) else {
                throw ProtoError(description: "field \(field): \(n) bytes announced, \(bytes.endIndex - at) left")
            }
            defer { at += Int(n) }
            return (field, .bytes(bytes[at..<(at + Int(n))]))
        case nil: throw ProtoError(description: "field \(field): wire type \(key & 7) is not used by event files")
        }
    }
}
