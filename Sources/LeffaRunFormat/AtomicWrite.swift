// Small files of a run replaced whole (state.json, heartbeat.json, lock holders): a reader sees
// the old file or the new one, never half of either, and a crash leaves the old one.
import Foundation

/// Writes to a temporary name in the same folder, fsyncs, renames: readers see the old or the new
/// file. On any failure (a full disk, a read-only folder) the temporary file is removed and the
/// old file is untouched.
public func atomicWrite(_ data: Data, to url: URL) throws {
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    func failure(_ what: String) -> RunError {
        let e = errno
        return RunError("\(url.path): cannot \(what) (\(String(cString: strerror(e))))")
    }
    let fd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    if fd < 0 { throw failure("write it") }
    var ok = false
    defer { if !ok { unlink(tmp.path) } }
    let written = data.withUnsafeBytes { b -> Bool in
        var at = 0
        while at < b.count {
            let n = write(fd, b.baseAddress! + at, b.count - at)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            at += n
        }
        return true
    }
    if !written { let e = failure("write it"); close(fd); throw e }
    if fsync(fd) != 0 { let e = failure("write it to disk"); close(fd); throw e }
    if close(fd) != 0 { throw failure("write it") }
    if rename(tmp.path, url.path) != 0 { throw failure("replace it") }
    ok = true
}

/// `mkdir -p`, with the failing folder and the system's reason in the error (a read-only or full
/// file system, a file in the way).
public func makeDirectories(_ url: URL) throws {
    var path = ""
    for part in url.standardizedFileURL.path.split(separator: "/") {
        path += "/" + part
        if mkdir(path, 0o755) == 0 || errno == EEXIST {
            var st = stat()
            if stat(path, &st) == 0 && (st.st_mode & S_IFMT) != S_IFDIR {
                throw RunError("\(path): cannot create a folder there: a file is in the way")
            }
            continue
        }
        throw RunError("\(path): cannot create the folder (\(String(cString: strerror(errno))))")
    }
}
