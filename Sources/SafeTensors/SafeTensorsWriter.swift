// Writing safetensors files, byte-identical to the reference implementation for the same tensors:
// entries sorted by descending dtype (SafeTensorsDType order) then by name, compact JSON with
// "__metadata__" first, header padded with spaces to a multiple of 8 so every tensor starts
// 8-byte aligned in the file. Not a reader (SafeTensorsFile.swift).
//
// Atomic replace: the file is written to a temporary name in the destination's directory,
// fsync'd, renamed over the destination and the directory fsync'd. A crash leaves either the old
// file or the new one, never a mix; a reader that has the old file mapped keeps its bytes.

import Foundation
import LeffaTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct SafeTensorsWriter {
    /// Written as "__metadata__" (omitted when empty), keys sorted.
    public var metadata: [String: String]
    private var items: [Item] = []

    private enum Payload { case float(Tensor), int64([Int64]) }
    private struct Item { var name: String; var dtype: SafeTensorsDType; var shape: [Int]; var payload: Payload }

    public init(metadata: [String: String] = [:]) { self.metadata = metadata }

    /// Adds a float tensor, stored as `dtype`: .f32 (bit-exact), .f16 or .bf16 (round to nearest
    /// even), or .f64 (exact). The tensor's values are read when the file is written.
    public mutating func add(_ name: String, _ tensor: Tensor, as dtype: SafeTensorsDType = .f32) {
        items.append(Item(name: name, dtype: dtype, shape: tensor.shape, payload: .float(tensor)))
    }

    /// Adds integers stored as I64 (e.g. diffusion timesteps); `shape` defaults to [count].
    public mutating func add(_ name: String, int64s values: [Int64], shape: [Int]? = nil) {
        items.append(Item(name: name, dtype: .i64, shape: shape ?? [values.count], payload: .int64(values)))
    }

    /// Writes atomically to `url` (see the file header).
    public func write(to url: URL) throws {
        let path = url.path
        let plan = try prepare(file: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = (dir as NSString).appendingPathComponent(
            ".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        func fail(_ what: String) -> SafeTensorsError {
            .io(file: path, reason: "\(what): \(String(cString: strerror(errno)))")
        }

        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 { throw fail("cannot create temporary file '\(tmp)'") }
        var closed = false, renamed = false
        defer {
            if !closed { close(fd) }
            if !renamed { unlink(tmp) }
        }
        try emit(plan) { bytes in
            var p = bytes.baseAddress, left = bytes.count
            while left > 0 {
                let w = posixWrite(fd, p, left)
                if w < 0 { if errno == EINTR { continue }; throw fail("cannot write '\(tmp)'") }
                p = p.map { $0 + w }; left -= w
            }
        }
        if fsync(fd) != 0 { throw fail("cannot fsync '\(tmp)'") }
        closed = true
        if close(fd) != 0 { throw fail("cannot close '\(tmp)'") }
        if rename(tmp, path) != 0 { throw fail("cannot rename '\(tmp)' to the destination") }
        renamed = true
        // Make the rename itself durable.
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    /// The whole file in memory (for small files and tests).
    public func serialized() throws -> [UInt8] {
        let plan = try prepare(file: "<memory>")
        var out: [UInt8] = []
        out.reserveCapacity(8 + plan.header.count + plan.dataSize)
        try emit(plan) { out.append(contentsOf: $0) }
        return out
    }

    // MARK: Layout

    private struct Plan { var header: [UInt8]; var items: [Item]; var dataSize: Int }

    /// Validates the items, sorts them like the reference implementation and builds the header.
    private func prepare(file: String) throws -> Plan {
        var seen = Set<String>()
        for it in items {
            if !seen.insert(it.name).inserted { throw SafeTensorsError.duplicateKey(file: file, key: it.name) }
            if it.name == "__metadata__" {
                throw SafeTensorsError.invalidWrite(
                    file: file, key: it.name, reason: "this key is reserved for the metadata")
            }
            if it.shape.contains(where: { $0 < 0 }) {
                throw SafeTensorsError.invalidWrite(
                    file: file, key: it.name, reason: "negative dimension in shape \(it.shape)")
            }
            switch it.payload {
            case .float:
                if ![.f32, .f16, .bf16, .f64].contains(it.dtype) {
                    throw SafeTensorsError.invalidWrite(
                        file: file, key: it.name,
                        reason: "a float tensor can be written as F32, F16, BF16 or F64, not \(it.dtype.rawValue)")
                }
            case .int64(let v):
                if v.count != it.shape.reduce(1, *) {
                    throw SafeTensorsError.invalidWrite(
                        file: file, key: it.name, reason: "\(v.count) values do not fill shape \(it.shape)")
                }
            }
        }
        let sorted = items.sorted { a, b in a.dtype != b.dtype ? a.dtype > b.dtype : utf8Less(a.name, b.name) }
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted(by: utf8Less).map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(
                separator: ",")
            json += "}"
            first = false
        }
        var offset = 0
        for it in sorted {
            let bytes = it.shape.reduce(1, *) * it.dtype.size
            if !first { json += "," }
            first = false
            json +=
                "\(jsonString(it.name)):{\"dtype\":\"\(it.dtype.rawValue)\",\"shape\":[\(it.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}"
            offset += bytes
        }
        json += "}"
        var header = Array(json.utf8)
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8))
        return Plan(header: header, items: sorted, dataSize: offset)
    }

    /// Streams the file through `sink` in pieces of at most `chunk` elements, converting as it goes,
    /// so writing a model in F16 never holds a second copy of it.
    private func emit(_ plan: Plan, chunk: Int = 1 << 16, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        var n = UInt64(plan.header.count).littleEndian
        try withUnsafeBytes(of: &n) { try sink($0) }
        try plan.header.withUnsafeBytes { try sink($0) }
        var half = [UInt16](repeating: 0, count: chunk)
        var wide = [Double](repeating: 0, count: chunk)
        for it in plan.items {
            switch it.payload {
            case .int64(let v):
                try v.withUnsafeBytes { try sink($0) } // host order is little-endian (checked in SafeTensorsFile.swift)
            case .float(let t):
                let src = t.data, count = t.count
                if it.dtype == .f32 {
                    try sink(UnsafeRawBufferPointer(start: src, count: 4 * count))
                    continue
                }
                var start = 0
                while start < count {
                    let m = min(chunk, count - start)
                    switch it.dtype {
                    case .f16:
                        for i in 0..<m { half[i] = floatToFloat16Bits(src[start + i]) }
                        try half.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<2 * m])) }
                    case .bf16:
                        for i in 0..<m { half[i] = floatToBFloat16Bits(src[start + i]) }
                        try half.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<2 * m])) }
                    default: // .f64, the only other float dtype prepare() lets through
                        for i in 0..<m { wide[i] = Double(src[start + i]) }
                        try wide.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<8 * m])) }
                    }
                    start += m
                }
            }
        }
    }
}

/// Writes `tensors` (any order: the file order is the reference's) as `dtype`, plus `int64s`
/// entries (name, values, shape) stored as I64, atomically to `url`.
public func writeSafeTensors(
    _ tensors: [(String, Tensor)], to url: URL, dtype: SafeTensorsDType = .f32,
    int64s: [(String, [Int64], [Int])] = [], metadata: [String: String] = [:]
) throws {
    var w = SafeTensorsWriter(metadata: metadata)
    for (name, t) in tensors { w.add(name, t, as: dtype) }
    for (name, v, shape) in int64s { w.add(name, int64s: v, shape: shape) }
    try w.write(to: url)
}

/// Same, from a dictionary.
public func writeSafeTensors(
    _ tensors: [String: Tensor], to url: URL, dtype: SafeTensorsDType = .f32,
    int64s: [(String, [Int64], [Int])] = [], metadata: [String: String] = [:]
) throws {
    try writeSafeTensors(Array(tensors), to: url, dtype: dtype, int64s: int64s, metadata: metadata)
}

/// write(2), named apart from `SafeTensorsWriter.write(to:)`.
private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer?, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}

/// A JSON string literal escaped as serde_json does (quote, backslash and control characters
/// only; everything else, non-ASCII included, verbatim), so headers match the reference's bytes.
func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where u.value < 0x20:
            let hex = String(u.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}
