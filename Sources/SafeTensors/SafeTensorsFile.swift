// Reading safetensors files: map the file, validate the whole header once, then copy tensors out
// by name on demand. Not a writer (SafeTensorsWriter.swift) and not a model loader: it knows keys,
// dtypes and shapes, nothing about what the tensors mean.
//
// Layout (all little-endian):
//   [8 bytes]  N, the header length, u64
//   [N bytes]  JSON object {"key": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//              ..., optional "__metadata__": {string: string}}, possibly padded with spaces
//   [rest]     data; offsets are relative to the first byte after the header
//
// Validation follows the reference implementation: every entry well-formed, every span inside the
// data section and exactly shape × dtype bytes long, and the spans tiling the data section with no
// gap, overlap or trailing bytes. A file that passes can be read without further checks, so
// `tensor(_:)` cannot fault on a corrupt file; a file that fails is reported at open time, naming
// the file and the first offending key (in key order, so the report is the same on every run).

import Foundation
import LeffaTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if _endian(big)
#error("safetensors data is little-endian; this reader copies it as host-order memory")
#endif

public final class SafeTensorsFile: @unchecked Sendable {
    /// Where one tensor lives and what it is.
    public struct Entry: Sendable, Equatable {
        public let dtype: SafeTensorsDType
        /// Dimensions, outermost first; [] is a scalar (one element).
        public let shape: [Int]
        /// Byte range inside the data section.
        public let begin: Int, end: Int
        /// Number of elements.
        public var count: Int { shape.reduce(1, *) }
    }

    /// The path as given, for messages.
    public let path: String
    /// Tensor keys in the order of their data in the file (for files written by the reference
    /// implementation or by SafeTensorsWriter: by descending dtype, then by name).
    public let names: [String]
    /// The `__metadata__` object; empty when absent.
    public let metadata: [String: String]
    /// The header length N (bytes after the 8-byte length field, including padding).
    public let headerLength: Int
    /// Bytes in the data section.
    public let dataSize: Int
    private let entries: [String: Entry]
    /// The whole file, mapped read-only and private (at least 8 bytes, so never an empty map).
    private let mapping: UnsafeMutableRawPointer
    private let mappedLength: Int
    private var data: UnsafeRawPointer { UnsafeRawPointer(mapping) + 8 + headerLength }

    public convenience init(url: URL) throws { try self.init(path: url.path) }

    /// Maps `path` and validates its header; tensors are read later, by name.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw SafeTensorsError.io(file: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 {
            throw SafeTensorsError.io(file: path, reason: "cannot stat: \(String(cString: strerror(errno)))")
        }
        if (st.st_mode & S_IFMT) != S_IFREG { throw SafeTensorsError.io(file: path, reason: "not a regular file") }
        let size = Int(st.st_size)
        if size < 8 { throw SafeTensorsError.fileTooShort(file: path, size: size) }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw SafeTensorsError.io(
                file: path, reason: "cannot mmap \(size) bytes: \(String(cString: strerror(errno)))")
        }
        // From here on the mapping must be released on every error path.
        var ok = false
        defer { if !ok { munmap(m, size) } }

        let n = UInt64(littleEndian: UnsafeRawPointer(m).loadUnaligned(as: UInt64.self))
        if n > 100_000_000 { throw SafeTensorsError.headerTooLarge(file: path, headerLength: n) }
        if Int(n) > size - 8 { throw SafeTensorsError.headerBeyondFile(file: path, headerLength: n, fileSize: size) }
        let header = Data(bytes: UnsafeRawPointer(m) + 8, count: Int(n))
        let dataSize = size - 8 - Int(n)
        let parsed = try Self.parseHeader(header, dataSize: dataSize, file: path)

        self.mapping = m
        self.mappedLength = size
        self.headerLength = Int(n)
        self.dataSize = dataSize
        self.entries = parsed.entries
        self.names = parsed.order
        self.metadata = parsed.metadata
        ok = true
    }

    deinit { munmap(mapping, mappedLength) }

    // MARK: Lookup

    public func contains(_ name: String) -> Bool { entries[name] != nil }

    /// The header entry of `name`.
    public func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else {
            throw SafeTensorsError.missingKey(file: path, key: name, similar: similarKeys(to: name))
        }
        return e
    }

    public func shape(of name: String) throws -> [Int] { try entry(name).shape }
    public func dtype(of name: String) throws -> SafeTensorsDType { try entry(name).dtype }

    /// The entry of `name`, checked against `expectedShape` when one is given.
    private func entry(_ name: String, expectedShape: [Int]?) throws -> Entry {
        let e = try entry(name)
        if let expectedShape, expectedShape != e.shape {
            throw SafeTensorsError.wrongShape(file: path, key: name, expected: expectedShape, actual: e.shape)
        }
        return e
    }

    // MARK: Reading

    /// The tensor `name` as float32 (a new tensor, no autograd). F32 is copied bit for bit; F16,
    /// BF16 and F8 convert exactly; F64 and integers round to the nearest float32.
    /// Throws `.wrongShape` if `expectedShape` is given and differs.
    public func tensor(_ name: String, expectedShape: [Int]? = nil) throws -> Tensor {
        let e = try entry(name, expectedShape: expectedShape)
        let t = Tensor(zeros: e.shape)
        convert(e, into: t.data)
        return t
    }

    /// Copies `name` into an existing tensor of the same shape, e.g. a parameter that is a view
    /// into a flat parameter block, so loading a checkpoint allocates nothing.
    public func load(_ name: String, into destination: Tensor) throws {
        let e = try entry(name, expectedShape: destination.shape)
        convert(e, into: destination.data)
    }

    /// The integers of `name` exactly (I64, I32, U32, I16, U16, I8, U8, BOOL; U64 if every value
    /// fits). Float dtypes are refused rather than truncated.
    public func int64s(_ name: String, expectedShape: [Int]? = nil) throws -> [Int64] {
        let e = try entry(name, expectedShape: expectedShape)
        guard e.dtype.isInteger else {
            throw SafeTensorsError.unsupportedDType(
                file: path, key: name, dtype: e.dtype, wanted: "Int64 (an integer dtype)")
        }
        let p = data + e.begin, n = e.count
        var out = [Int64](repeating: 0, count: n)
        for i in 0..<n {
            switch e.dtype {
            case .i64: out[i] = Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
            case .u64:
                let v = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                guard let s = Int64(exactly: v) else {
                    throw SafeTensorsError.invalidEntry(
                        file: path, key: name, reason: "U64 value \(v) at index \(i) does not fit in Int64")
                }
                out[i] = s
            case .i32: out[i] = Int64(p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))
            case .u32: out[i] = Int64(p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
            case .i16: out[i] = Int64(p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))
            case .u16: out[i] = Int64(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            case .i8: out[i] = Int64(p.load(fromByteOffset: i, as: Int8.self))
            case .u8: out[i] = Int64(p.load(fromByteOffset: i, as: UInt8.self))
            case .bool: out[i] = p.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0
            default: break
            }
        }
        return out
    }

    /// The stored bytes of `name`, valid only inside `body` (the mapping lives as long as self).
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let e = try entry(name)
        return try withExtendedLifetime(self) {
            try body(UnsafeRawBufferPointer(start: data + e.begin, count: e.end - e.begin))
        }
    }

    /// Fills `out` (e.count floats) from a validated entry. Elementwise, so splitting over threads
    /// cannot change a bit.
    private func convert(_ e: Entry, into out: UnsafeMutablePointer<Float>) {
        let p = data + e.begin, n = e.count
        // Ask the kernel to read the span ahead: page faults one 4 KiB page at a time are
        // what bounds a cold read otherwise.
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (8 + headerLength + e.begin) / page * page
        _ = madvise(mapping + first, 8 + headerLength + e.end - first, MADV_WILLNEED)
        Parallel.for(n, grain: 1 << 16) { r in
            switch e.dtype {
            case .f32:
                UnsafeMutableRawPointer(out + r.lowerBound).copyMemory(
                    from: p + 4 * r.lowerBound, byteCount: 4 * r.count)
            case .f16:
                for i in r {
                    out[i] = float16BitsToFloat(
                        UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                }
            case .bf16:
                for i in r {
                    out[i] = bfloat16BitsToFloat(
                        UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                }
            case .f64: for i in r { out[i] = Float(p.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
            case .i64: for i in r { out[i] = Float(p.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
            case .u64: for i in r { out[i] = Float(p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) }
            case .i32: for i in r { out[i] = Float(p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
            case .u32: for i in r { out[i] = Float(p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
            case .i16: for i in r { out[i] = Float(p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
            case .u16: for i in r { out[i] = Float(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            case .i8: for i in r { out[i] = Float(p.load(fromByteOffset: i, as: Int8.self)) }
            case .u8: for i in r { out[i] = Float(p.load(fromByteOffset: i, as: UInt8.self)) }
            case .bool: for i in r { out[i] = p.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0 }
            case .f8e5m2: for i in r { out[i] = float8E5M2BitsToFloat(p.load(fromByteOffset: i, as: UInt8.self)) }
            case .f8e4m3: for i in r { out[i] = float8E4M3BitsToFloat(p.load(fromByteOffset: i, as: UInt8.self)) }
            }
        }
    }

    // MARK: Key sets

    /// Expected keys absent from the file, and file keys not expected; both sorted.
    public func keyDifference<S: Sequence>(expected: S) -> (missing: [String], unexpected: [String])
    where S.Element == String {
        let want = Set(expected)
        let missing = want.filter { entries[$0] == nil }.sorted(by: utf8Less)
        let unexpected = names.filter { !want.contains($0) }.sorted(by: utf8Less)
        return (missing, unexpected)
    }

    /// Throws `.keyMismatch` (listing a few of each) unless the file holds exactly `expected`, or
    /// at least `expected` when `allowUnexpected`.
    public func checkKeys<S: Sequence>(expected: S, allowUnexpected: Bool = false) throws where S.Element == String {
        let (missing, unexpected) = keyDifference(expected: expected)
        if !missing.isEmpty || (!allowUnexpected && !unexpected.isEmpty) {
            throw SafeTensorsError.keyMismatch(
                file: path, missing: missing, unexpected: allowUnexpected ? [] : unexpected)
        }
    }

    /// Up to three keys sharing the most trailing dot-separated components with `name` (so
    /// "conv_in.weight" suggests "unet.conv_in.weight"): the usual cause of a missing key is a
    /// prefix that differs between the writer and the reader.
    private func similarKeys(to name: String) -> [String] {
        let want = Array(name.split(separator: ".").reversed())
        var best = 0, found: [String] = []
        for k in names {
            let parts = k.split(separator: ".").reversed()
            var common = 0
            for (a, b) in zip(parts, want) { if a == b { common += 1 } else { break } }
            if common > best { best = common; found = [k] } else if common == best && common > 0 { found.append(k) }
        }
        return Array(found.sorted(by: utf8Less).prefix(3))
    }

    // MARK: Header parsing

    private struct Parsed { var entries: [String: Entry]; var order: [String]; var metadata: [String: String] }

    /// Validates the JSON header against a data section of `dataSize` bytes.
    private static func parseHeader(_ header: Data, dataSize: Int, file: String) throws -> Parsed {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: header, options: []) } catch {
            let why = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
            throw SafeTensorsError.invalidJSON(file: file, reason: why)
        }
        guard let top = object as? [String: Any] else {
            throw SafeTensorsError.invalidJSON(
                file: file, reason: "top level is \(jsonKind(object)), expected an object")
        }
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        // Sorted so that the first error reported does not depend on dictionary order.
        for key in top.keys.sorted(by: utf8Less) {
            let value = top[key]!
            if key == "__metadata__" {
                guard let dict = value as? [String: Any] else {
                    throw SafeTensorsError.invalidEntry(
                        file: file, key: key, reason: "is \(jsonKind(value)), expected an object of strings")
                }
                for (k, v) in dict {
                    guard let s = v as? String else {
                        throw SafeTensorsError.invalidEntry(
                            file: file, key: key, reason: "value of '\(k)' is \(jsonKind(v)), expected a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            entries[key] = try parseEntry(key, value, dataSize: dataSize, file: file)
        }
        // The spans must tile [0, dataSize): sorted by offset, each starts where the last ended.
        let order = entries.keys.sorted { a, b in
            let x = entries[a]!, y = entries[b]!
            return (x.begin, x.end) != (y.begin, y.end) ? (x.begin, x.end) < (y.begin, y.end) : utf8Less(a, b)
        }
        var cursor = 0, previous = ""
        for key in order {
            let e = entries[key]!
            if e.begin < cursor {
                throw SafeTensorsError.badLayout(
                    file: file, key: key,
                    reason: "data_offsets [\(e.begin), \(e.end)] overlap tensor '\(previous)' which ends at \(cursor)")
            }
            if e.begin > cursor {
                throw SafeTensorsError.badLayout(
                    file: file, key: key,
                    reason:
                        "data_offsets [\(e.begin), \(e.end)] leave a gap of \(e.begin - cursor) bytes after \(previous.isEmpty ? "the start of the data" : "tensor '\(previous)'") (expected begin \(cursor))"
                )
            }
            cursor = e.end; previous = key
        }
        if cursor != dataSize {
            throw SafeTensorsError.badLayout(
                file: file, key: previous.isEmpty ? "(no tensors)" : previous,
                reason:
                    "tensors end at byte \(cursor) of the data section but the file has \(dataSize) data bytes (\(dataSize - cursor) trailing)"
            )
        }
        return Parsed(entries: entries, order: order, metadata: metadata)
    }

    private static func parseEntry(_ key: String, _ value: Any, dataSize: Int, file: String) throws -> Entry {
        func bad(_ reason: String) -> SafeTensorsError { .invalidEntry(file: file, key: key, reason: reason) }
        guard let dict = value as? [String: Any] else {
            throw bad("is \(jsonKind(value)), expected an object with dtype, shape and data_offsets")
        }
        guard let dtypeValue = dict["dtype"] else { throw bad("has no \"dtype\"") }
        guard let dtypeName = dtypeValue as? String else {
            throw bad("\"dtype\" is \(jsonKind(dtypeValue)), expected a string")
        }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw SafeTensorsError.unknownDType(file: file, key: key, dtype: dtypeName)
        }
        guard let shape = try intArray(dict["shape"], field: "shape", bad: bad) else { throw bad("has no \"shape\"") }
        guard let offsets = try intArray(dict["data_offsets"], field: "data_offsets", bad: bad) else {
            throw bad("has no \"data_offsets\"")
        }
        guard offsets.count == 2 else {
            throw bad("\"data_offsets\" has \(offsets.count) numbers, expected 2 ([begin, end])")
        }
        let (begin, end) = (offsets[0], offsets[1])
        if begin > end || end > dataSize {
            throw SafeTensorsError.offsetsOutOfRange(file: file, key: key, begin: begin, end: end, dataSize: dataSize)
        }
        var count = 1
        for d in shape {
            let (c, o) = count.multipliedReportingOverflow(by: d)
            if o { throw bad("shape \(shape) has more elements than fit in memory") }
            count = c
        }
        let (bytes, o) = count.multipliedReportingOverflow(by: dtype.size)
        if o || bytes != end - begin {
            throw SafeTensorsError.sizeMismatch(
                file: file, key: key, dtype: dtype, shape: shape,
                expectedBytes: o ? Int.max : bytes, actualBytes: end - begin)
        }
        return Entry(dtype: dtype, shape: shape, begin: begin, end: end)
    }

    /// A JSON array of non-negative integers, nil if the field is absent.
    private static func intArray(_ value: Any?, field: String, bad: (String) -> SafeTensorsError) throws -> [Int]? {
        guard let value else { return nil }
        guard let array = value as? [Any] else {
            throw bad("\"\(field)\" is \(jsonKind(value)), expected an array of integers")
        }
        return try array.map { v in
            // JSON true/false arrive as NSNumber too; their objCType is "c".
            // Bridging to Int succeeds only for exact values (not 1.5, 1e30 or 2^64-1).
            guard let n = v as? NSNumber, String(cString: n.objCType) != "c", let i = v as? Int, i >= 0 else {
                throw bad("\"\(field)\" contains \(v) (\(jsonKind(v))), expected non-negative integers")
            }
            return i
        }
    }

    private static func jsonKind(_ v: Any) -> String {
        switch v {
        case is String: return "a string"
        case is [Any]: return "an array"
        case is [String: Any]: return "an object"
        case is NSNull: return "null"
        case let n as NSNumber: return String(cString: n.objCType) == "c" ? "a boolean" : "a number"
        default: return "\(type(of: v))"
        }
    }
}

/// Byte-wise UTF-8 order, as Rust's `String` compares: Swift's `<` on strings uses Unicode
/// canonical ordering, which differs for some non-ASCII keys.
func utf8Less(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }
