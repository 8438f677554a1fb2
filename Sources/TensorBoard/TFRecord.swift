// TFRecord framing, the container of event files: each record is
//   uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes | data | uint32 masked CRC-32C of data.
// A writer that dies mid-record leaves a torn tail; readers (TensorBoard's, and `scan` here) stop
// at the first record that is cut short or fails a checksum and keep everything before it.

public enum TFRecord {
    /// Bytes of one record around `data`.
    public static func frame<C: Collection>(_ data: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        let length = littleEndian(UInt64(data.count))
        out += length
        out += littleEndian(CRC32C.masked(length))
        out += data
        out += littleEndian(CRC32C.masked(data))
        return out
    }

    /// What `scan` found: the whole records in order, where the last one ends, and why it stopped
    /// early (nil when the bytes end exactly after a record).
    public struct Scan {
        public var records: [ArraySlice<UInt8>]
        /// Bytes up to the end of the last whole record: what a rewrite keeps.
        public var validLength: Int
        public var problem: String?
    }

    /// Splits `bytes` into records, verifying both checksums of each.
    public static func scan(_ bytes: [UInt8]) -> Scan {
        var s = Scan(records: [], validLength: 0, problem: nil)
        var at = 0
        while at < bytes.count {
            let n = s.records.count
            guard bytes.count - at >= 12 else {
                s.problem = "record \(n) at byte \(at): header cut short (\(bytes.count - at) of 12 bytes)"
                break
            }
            let lengthBytes = bytes[at..<(at + 8)]
            guard readUInt32(bytes, at + 8) == CRC32C.masked(lengthBytes) else {
                s.problem = "record \(n) at byte \(at): the length's checksum does not match"
                break
            }
            let length = readUInt64(bytes, at)
            let start = at + 12
            guard length <= UInt64(bytes.count - start), bytes.count - start - Int(length) >= 4 else {
                s.problem = "record \(n) at byte \(at): \(length) bytes of data announced, the file ends first"
                break
            }
            let end = start + Int(length)
            let data = bytes[start..<end]
            guard readUInt32(bytes, end) == CRC32C.masked(data) else {
                s.problem = "record \(n) at byte \(at): the data's checksum does not match"
                break
            }
            s.records.append(data)
            at = end + 4
            s.validLength = at
        }
        return s
    }

    static func littleEndian<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
        withUnsafeBytes(of: v.littleEndian) { Array($0) }
    }

    static func readUInt64(_ b: [UInt8], _ at: Int) -> UInt64 {
        (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) }
    }

    static func readUInt32(_ b: [UInt8], _ at: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) }
    }
}
