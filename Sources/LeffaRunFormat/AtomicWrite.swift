// Small files of a run replaced whole (state.json, heartbeat.json, lock holders): a reader sees
// the old file or the new one, never half of either, and a crash leaves the old one.
import Foundation

/// Writes to a temporary name in the same folder, fsyncs, renames: readers see the old or the new file.
public func atomicWrite(_ data: Data, to url: URL) throws {
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    guard FileManager.default.createFile(atPath: tmp.path, contents: data) else {
        throw RunError("\(tmp.path): cannot write (\(String(cString: strerror(errno))))")
    }
    let fd = open(tmp.path, O_RDONLY)
    if fd >= 0 { fsync(fd); close(fd) }
    if rename(tmp.path, url.path) != 0 {
        let why = String(cString: strerror(errno))
        unlink(tmp.path)
        throw RunError("\(url.path): cannot replace (\(why))")
    }
}

/// An error about a run, its files or its config, worded for the user (it names the file).
public struct RunError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}
