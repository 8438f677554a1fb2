// Everything that can go wrong reading or writing a safetensors file. Each message names the
// file, the tensor key when there is one, what was found and what was expected, so that a bad
// checkpoint is diagnosed from the log line alone.

import Foundation

public enum SafeTensorsError: Error, Equatable, Sendable {
    /// open/fstat/mmap/write/rename failed; `reason` is the operation and strerror.
    case io(file: String, reason: String)
    /// Fewer than the 8 bytes of the header length.
    case fileTooShort(file: String, size: Int)
    /// The header length field points past the end of the file (truncated download or copy).
    case headerBeyondFile(file: String, headerLength: UInt64, fileSize: Int)
    /// The header length exceeds the reference implementation's 100 MB limit.
    case headerTooLarge(file: String, headerLength: UInt64)
    /// The header is not UTF-8 JSON, or not a JSON object.
    case invalidJSON(file: String, reason: String)
    /// A header entry is malformed (missing field, negative dimension, non-string metadata, …).
    case invalidEntry(file: String, key: String, reason: String)
    /// The dtype string is not one of the format's types.
    case unknownDType(file: String, key: String, dtype: String)
    /// The dtype is valid but cannot be returned as asked (e.g. F32 as Int64, F8 as float).
    case unsupportedDType(file: String, key: String, dtype: SafeTensorsDType, wanted: String)
    /// data_offsets reach outside the data section.
    case offsetsOutOfRange(file: String, key: String, begin: Int, end: Int, dataSize: Int)
    /// data_offsets cover a number of bytes other than shape × dtype size.
    case sizeMismatch(
        file: String, key: String, dtype: SafeTensorsDType, shape: [Int], expectedBytes: Int, actualBytes: Int)
    /// The tensors do not tile the data section: a gap, an overlap or trailing bytes.
    case badLayout(file: String, key: String, reason: String)
    /// The caller asked for a shape the stored tensor does not have.
    case wrongShape(file: String, key: String, expected: [Int], actual: [Int])
    /// The key is not in the file; `similar` lists a few keys with the same last components.
    case missingKey(file: String, key: String, similar: [String])
    /// A check of the whole key set failed: expected keys absent and/or keys nobody asked for.
    case keyMismatch(file: String, missing: [String], unexpected: [String])
    /// The same key was given twice to the writer.
    case duplicateKey(file: String, key: String)
    /// A value given to the writer does not fit its declared shape or dtype.
    case invalidWrite(file: String, key: String, reason: String)
}

extension SafeTensorsError: CustomStringConvertible, LocalizedError {
    public var description: String {
        switch self {
        case let .io(file, reason):
            return "safetensors '\(file)': \(reason)"
        case let .fileTooShort(file, size):
            return
                "safetensors '\(file)': file is \(size) bytes, expected at least 8 (the header length); the file is empty or truncated"
        case let .headerBeyondFile(file, n, size):
            return
                "safetensors '\(file)': header length \(n) needs \(n &+ 8) bytes but the file has \(size); the file is truncated or not a safetensors file"
        case let .headerTooLarge(file, n):
            return "safetensors '\(file)': header length \(n) exceeds the 100000000-byte limit; not a safetensors file?"
        case let .invalidJSON(file, reason):
            return "safetensors '\(file)': header is not a valid JSON object: \(reason)"
        case let .invalidEntry(file, key, reason):
            return "safetensors '\(file)': key '\(key)': \(reason)"
        case let .unknownDType(file, key, dtype):
            let known = SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ")
            return "safetensors '\(file)': key '\(key)': unknown dtype '\(dtype)', expected one of \(known)"
        case let .unsupportedDType(file, key, dtype, wanted):
            return "safetensors '\(file)': key '\(key)': dtype \(dtype.rawValue) cannot be read as \(wanted)"
        case let .offsetsOutOfRange(file, key, b, e, size):
            return
                "safetensors '\(file)': key '\(key)': data_offsets [\(b), \(e)] outside the data section of \(size) bytes (need 0 <= begin <= end <= \(size)); the file is truncated or its header is corrupt"
        case let .sizeMismatch(file, key, dtype, shape, want, got):
            return
                "safetensors '\(file)': key '\(key)': data_offsets span \(got) bytes but shape \(shape) of \(dtype.rawValue) needs \(want)"
        case let .badLayout(file, key, reason):
            return "safetensors '\(file)': key '\(key)': \(reason)"
        case let .wrongShape(file, key, expected, actual):
            return "safetensors '\(file)': key '\(key)': shape \(actual), expected \(expected)"
        case let .missingKey(file, key, similar):
            let hint = similar.isEmpty ? "" : "; similar keys: " + similar.map { "'\($0)'" }.joined(separator: ", ")
            return "safetensors '\(file)': key '\(key)' not found\(hint)"
        case let .keyMismatch(file, missing, unexpected):
            var parts: [String] = []
            if !missing.isEmpty { parts.append("\(missing.count) missing (\(Self.few(missing)))") }
            if !unexpected.isEmpty { parts.append("\(unexpected.count) unexpected (\(Self.few(unexpected)))") }
            return "safetensors '\(file)': keys do not match the expected set: " + parts.joined(separator: "; ")
        case let .duplicateKey(file, key):
            return "safetensors '\(file)': key '\(key)' given twice to the writer"
        case let .invalidWrite(file, key, reason):
            return "safetensors '\(file)': key '\(key)': \(reason)"
        }
    }

    public var errorDescription: String? { description }

    /// The first five names, quoted, then how many more.
    static func few(_ names: [String], limit: Int = 5) -> String {
        let shown = names.prefix(limit).map { "'\($0)'" }.joined(separator: ", ")
        return names.count > limit ? "\(shown), … \(names.count - limit) more" : shown
    }
}
