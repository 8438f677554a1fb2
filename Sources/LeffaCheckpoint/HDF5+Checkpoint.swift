// The few HDF5 operations the checkpoint code needs, wrapped so that a failing call becomes a
// Swift error carrying HDF5's own explanation instead of a message on stderr. Only what the
// writer and reader use; not a general HDF5 binding. Uses calls that are the same from HDF5 1.8
// to 1.14 (no H5Literate / H5Oget_info, whose signatures changed between versions).

import CHDF5
import Foundation

#if _endian(big)
#error("checkpoints hash the in-memory bytes of little-endian float32 data: big-endian hosts are not supported")
#endif

/// An HDF5 call failed: what we were doing and HDF5's innermost and outermost messages.
struct H5Failure: Error {
    var operation: String
    var message: String

    /// The system error under the failure, when HDF5's message carries one ("errno = 28, …"):
    /// a full disk or a read-only file system is the user's to fix, not damage or a bug.
    var systemErrno: Int32? {
        guard let r = message.range(of: "errno = ") else { return nil }
        return Int32(message[r.upperBound...].prefix(while: \.isNumber))
    }
}

enum H5 {
    /// Call at every entry point: error printing is a per-thread setting in thread-safe builds.
    static func enter() {
        _ = initialized
        leffa_h5_quiet()
    }

    /// HDF5 without its exit handler: after a failed write (a full disk) the library keeps the
    /// file half-closed, and its handler would crash closing it again at exit, after the error
    /// was reported. Every file we write is flushed and closed by us, so the handler has nothing
    /// left to do otherwise.
    private static let initialized: Void = {
        _ = H5dont_atexit()
        _ = H5open()
    }()

    /// HDF5's description of the last failure on this thread (the API-level message, then the
    /// innermost cause, which says things like "truncated file: eof = 4096, stored_eof = 9216"),
    /// and clears the stack.
    static func lastError() -> String {
        var messages: [String] = []
        withUnsafeMutablePointer(to: &messages) { list in
            _ = H5Ewalk2(
                leffa_h5e_default(), H5E_WALK_UPWARD,
                { _, err, data in
                    if let desc = err?.pointee.desc, let data {
                        data.assumingMemoryBound(to: [String].self).pointee.append(String(cString: desc))
                    }
                    return 0
                }, list)
        }
        _ = H5Eclear2(leffa_h5e_default())
        guard let inner = messages.first, let outer = messages.last else { return "no HDF5 error message" }
        return inner == outer ? inner : "\(outer): \(inner)"
    }

    /// Throws `H5Failure` when `result` is negative (HDF5's failure value for every return type).
    @discardableResult
    static func check<T: BinaryInteger>(_ result: T, _ operation: @autoclosure () -> String) throws -> T {
        if result < 0 { throw H5Failure(operation: operation(), message: lastError()) }
        return result
    }

    /// A file access property list: the 1.8 object format (readable by every HDF5 since 2008,
    /// and the first with checksummed metadata), file locking off (it fails on some cluster file
    /// systems; one writer per checkpoint directory is the rule instead), and SEMI close degree
    /// so H5Fclose fails loudly if an object was left open.
    static func fileAccess() throws -> hid_t {
        let fapl = try check(H5Pcreate(leffa_h5p_file_access()), "create a file access property list")
        do {
            try check(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18), "set the format version bounds")
            try check(H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI), "set the file close degree")
            try check(H5Pset_file_locking(fapl, false, true), "turn file locking off")
        } catch { H5Pclose(fapl); throw error }
        return fapl
    }

    /// A variable-length UTF-8 string type (h5py returns these as `str`). Caller closes it.
    static func utf8StringType() throws -> hid_t {
        let t = try check(H5Tcopy(leffa_h5t_c_s1()), "copy the string type")
        do {
            try check(H5Tset_size(t, leffa_h5t_variable()), "make the string type variable-length")
            try check(H5Tset_cset(t, H5T_CSET_UTF8), "set the string type's character set")
        } catch { H5Tclose(t); throw error }
        return t
    }

    // MARK: Links

    /// Names of the links in group `g`, in HDF5's name order.
    static func linkNames(_ g: hid_t) throws -> [String] {
        var names: [String] = []
        try withUnsafeMutablePointer(to: &names) { list in
            _ = try check(
                leffa_h5_link_names(
                    g,
                    { name, data in
                        if let name, let data {
                            data.assumingMemoryBound(to: [String].self).pointee.append(String(cString: name))
                        }
                        return 0
                    }, list), "list a group")
        }
        return names
    }

    /// Opens group `name` below `parent`, creating it if absent.
    static func openOrCreateGroup(_ parent: hid_t, _ name: String) throws -> hid_t {
        if try check(H5Lexists(parent, name, leffa_h5p_default()), "look up group '\(name)'") > 0 {
            return try check(H5Gopen2(parent, name, leffa_h5p_default()), "open group '\(name)'")
        }
        return try check(
            H5Gcreate2(parent, name, leffa_h5p_default(), leffa_h5p_default(), leffa_h5p_default()),
            "create group '\(name)'")
    }

    // MARK: Dataspaces

    /// Scalar for rank 0, simple otherwise (zero-length dimensions allowed).
    static func dataspace(_ shape: [Int]) throws -> hid_t {
        if shape.isEmpty { return try check(H5Screate(H5S_SCALAR), "create a scalar dataspace") }
        let dims = shape.map { hsize_t($0) }
        return try check(H5Screate_simple(Int32(dims.count), dims, nil), "create a dataspace of shape \(shape)")
    }

    /// The shape of a dataspace; [] for scalars; nil for the null dataspace.
    static func shape(ofSpace s: hid_t) throws -> [Int]? {
        let cls = H5Sget_simple_extent_type(s)
        if cls == H5S_NULL { return nil }
        if cls == H5S_SCALAR { return [] }
        let rank = try check(H5Sget_simple_extent_ndims(s), "get a dataspace's rank")
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        try check(H5Sget_simple_extent_dims(s, &dims, nil), "get a dataspace's dimensions")
        return dims.map { Int($0) }
    }

    // MARK: Attributes

    /// Creates attribute `name` on `obj` and writes `value` into it.
    static func writeAttribute(_ obj: hid_t, _ name: String, _ value: CheckpointValue) throws {
        func put(_ fileType: hid_t, _ memType: hid_t, _ shape: [Int], _ bytes: UnsafeRawPointer?) throws {
            let space = try dataspace(shape)
            defer { H5Sclose(space) }
            let a = try check(
                H5Acreate2(obj, name, fileType, space, leffa_h5p_default(), leffa_h5p_default()),
                "create attribute '\(name)'")
            defer { H5Aclose(a) }
            if shape.reduce(1, *) > 0 { // scalars count 1; empty arrays have nothing to write
                try check(H5Awrite(a, memType, bytes), "write attribute '\(name)'")
            }
        }
        switch value {
        case .int64(var v):
            try withUnsafeBytes(of: &v) { try put(leffa_h5t_std_i64le(), leffa_h5t_native_int64(), [], $0.baseAddress) }
        case .float64(var v):
            try withUnsafeBytes(of: &v) {
                try put(leffa_h5t_ieee_f64le(), leffa_h5t_native_double(), [], $0.baseAddress)
            }
        case .int64s(let a):
            try a.withUnsafeBytes {
                try put(leffa_h5t_std_i64le(), leffa_h5t_native_int64(), [a.count], $0.baseAddress)
            }
        case .uint64s(let a):
            try a.withUnsafeBytes {
                try put(leffa_h5t_std_u64le(), leffa_h5t_native_uint64(), [a.count], $0.baseAddress)
            }
        case .string(let s):
            let t = try utf8StringType()
            defer { H5Tclose(t) }
            try s.withCString { p in
                var ptr: UnsafePointer<CChar>? = p
                try withUnsafeBytes(of: &ptr) { try put(t, t, [], $0.baseAddress) }
            }
        }
    }

    /// A scalar uint64 attribute (the digests and the checksum).
    static func writeUInt64Attribute(_ obj: hid_t, _ name: String, _ value: UInt64) throws {
        var v = value
        let space = try dataspace([])
        defer { H5Sclose(space) }
        let a = try check(
            H5Acreate2(obj, name, leffa_h5t_std_u64le(), space, leffa_h5p_default(), leffa_h5p_default()),
            "create attribute '\(name)'")
        defer { H5Aclose(a) }
        try check(H5Awrite(a, leffa_h5t_native_uint64(), &v), "write attribute '\(name)'")
    }

    static func attributeExists(_ obj: hid_t, _ name: String) throws -> Bool {
        try check(H5Aexists(obj, name), "look up attribute '\(name)'") > 0
    }

    /// Names of the attributes of `obj`, in HDF5's name order.
    static func attributeNames(_ obj: hid_t) throws -> [String] {
        var names: [String] = []
        var idx: hsize_t = 0
        try withUnsafeMutablePointer(to: &names) { list in
            _ = try check(
                H5Aiterate2(
                    obj, H5_INDEX_NAME, H5_ITER_INC, &idx,
                    { _, name, _, data in
                        if let name, let data {
                            data.assumingMemoryBound(to: [String].self).pointee.append(String(cString: name))
                        }
                        return 0
                    }, list), "list attributes")
        }
        return names
    }

    /// What a stored attribute holds when it is not one of the kinds `readAttribute` returns.
    struct UnsupportedAttribute: Error { var description: String }

    /// Reads an attribute written by `writeAttribute` (or by h5py with the same types). Throws
    /// `UnsupportedAttribute` for any other type or shape.
    /// Opens attribute `name` of `obj` with its type and dataspace for `body`, closing all three after.
    static func withAttribute<T>(
        _ obj: hid_t, _ name: String,
        _ body: (_ attribute: hid_t, _ type: hid_t, _ space: hid_t) throws -> T
    ) throws -> T {
        let a = try check(H5Aopen(obj, name, leffa_h5p_default()), "open attribute '\(name)'")
        defer { H5Aclose(a) }
        let type = try check(H5Aget_type(a), "get the type of attribute '\(name)'")
        defer { H5Tclose(type) }
        let space = try check(H5Aget_space(a), "get the dataspace of attribute '\(name)'")
        defer { H5Sclose(space) }
        return try body(a, type, space)
    }

    static func readAttribute(_ obj: hid_t, _ name: String) throws -> CheckpointValue {
        try withAttribute(obj, name) { a, type, space in try readAttribute(a, type, space, name) }
    }

    private static func readAttribute(_ a: hid_t, _ type: hid_t, _ space: hid_t, _ name: String) throws
        -> CheckpointValue
    {
        let shape = try Self.shape(ofSpace: space)
        let cls = H5Tget_class(type), size = H5Tget_size(type)

        switch cls {
        case H5T_STRING where shape == []:
            return .string(try readString(a, type, name))
        case H5T_INTEGER where size == 8:
            let signed = H5Tget_sign(type) == H5T_SGN_2
            if shape == [] && signed {
                var v: Int64 = 0
                try check(H5Aread(a, leffa_h5t_native_int64(), &v), "read attribute '\(name)'")
                return .int64(v)
            }
            // 1-D arrays; a null dataspace is an empty array too.
            guard shape == nil || shape!.count == 1 else { break }
            let n = shape?[0] ?? 0
            if signed {
                var v = [Int64](repeating: 0, count: n)
                if n > 0 { try check(H5Aread(a, leffa_h5t_native_int64(), &v), "read attribute '\(name)'") }
                return .int64s(v)
            } else {
                var v = [UInt64](repeating: 0, count: n)
                if n > 0 { try check(H5Aread(a, leffa_h5t_native_uint64(), &v), "read attribute '\(name)'") }
                return .uint64s(v)
            }
        case H5T_FLOAT where size == 8 && shape == []:
            var v: Double = 0
            try check(H5Aread(a, leffa_h5t_native_double(), &v), "read attribute '\(name)'")
            return .float64(v)
        default:
            break
        }
        throw UnsupportedAttribute(
            description: "\(describe(cls, size: size, type: type)) with shape \(shape.map { "\($0)" } ?? "null")")
    }

    /// Reads a scalar uint64 attribute; throws `UnsupportedAttribute` for anything else.
    static func readUInt64Attribute(_ obj: hid_t, _ name: String) throws -> UInt64 {
        try withAttribute(obj, name) { a, type, space in
            let cls = H5Tget_class(type), size = H5Tget_size(type)
            guard cls == H5T_INTEGER, size == 8, H5Tget_sign(type) == H5T_SGN_NONE, try shape(ofSpace: space) == []
            else {
                throw UnsupportedAttribute(description: describe(cls, size: size, type: type))
            }
            var v: UInt64 = 0
            try check(H5Aread(a, leffa_h5t_native_uint64(), &v), "read attribute '\(name)'")
            return v
        }
    }

    /// A scalar string attribute, variable-length or fixed-length, as UTF-8.
    private static func readString(_ a: hid_t, _ fileType: hid_t, _ name: String) throws -> String {
        let vlen = try check(H5Tis_variable_str(fileType), "inspect attribute '\(name)'") > 0
        if vlen {
            let mem = try utf8StringType()
            defer { H5Tclose(mem) }
            var p: UnsafeMutablePointer<CChar>? = nil
            try check(H5Aread(a, mem, &p), "read attribute '\(name)'")
            defer { if let p { H5free_memory(p) } }
            return p.map { String(cString: $0) } ?? ""
        }
        let n = H5Tget_size(fileType)
        let mem = try check(H5Tcopy(fileType), "copy the type of attribute '\(name)'")
        defer { H5Tclose(mem) }
        var buf = [UInt8](repeating: 0, count: n + 1)
        try check(H5Aread(a, mem, &buf), "read attribute '\(name)'")
        let end = buf.firstIndex(of: 0) ?? n
        return String(decoding: buf[..<end], as: UTF8.self)
    }

    /// "float32", "int32", "uint64", "string", … for messages.
    static func describe(_ cls: H5T_class_t, size: Int, type: hid_t) -> String {
        switch cls {
        case H5T_INTEGER: return (H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + "\(8 * size)"
        case H5T_FLOAT: return "float\(8 * size)"
        case H5T_STRING: return "string"
        case H5T_COMPOUND: return "compound"
        case H5T_ARRAY: return "array type"
        case H5T_VLEN: return "variable-length sequence"
        default: return "HDF5 type class \(cls.rawValue)"
        }
    }
}
