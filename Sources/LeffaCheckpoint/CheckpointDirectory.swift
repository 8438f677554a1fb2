// A folder of checkpoints named by step (`step-00001234.h5`): saving the next one, keeping the
// last K, and finding the newest one that is intact. What goes into a checkpoint is the
// trainer's business; the file format is CheckpointWriter/Reader's.
//
// Rules that keep already-written work safe:
//  1. One writer per directory (rank 0 of the worker). Readers (the coordinator) may look at
//     any time: a file only gets its final name once it is complete and on disk.
//  2. An older checkpoint is deleted only after the new one has its final name (keepLast), and
//     the file just saved is never among those deleted.
//  3. A damaged checkpoint is not deleted: `latestValid` renames it to NAME.corrupt (kept for
//     inspection, out of the listing, so a later save of the same step can proceed).
//  4. Leftover NAME.tmp files (a crash while writing) are never read; the writer removes them.

import Foundation

public final class CheckpointDirectory {
    public let url: URL
    /// How many checkpoints `save` keeps (the newest by step); 0 or less keeps all.
    public var keepLast: Int
    /// Human-readable notes about damaged checkpoints that `latestValid` skipped, oldest first.
    public private(set) var warnings: [String] = []
    /// Whether `latestValid` renames damaged files aside (rule 3). Only the one writer should:
    /// other MPI ranks reading the same folder skip them and leave the folder alone.
    public var movesDamagedAside = true

    /// Creates the directory if needed.
    public init(_ url: URL, keepLast: Int = 3) throws {
        self.url = url
        self.keepLast = keepLast
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError.io(
                file: url.path, reason: "cannot create the checkpoint directory: \(error.localizedDescription)")
        }
    }

    /// "step-00001234.h5": eight digits at least, so names sort like steps for up to 10^8 steps.
    public static func fileName(step: Int) -> String {
        let digits = String(step)
        return "step-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".h5"
    }

    /// The step of a checkpoint file name, or nil for any other name (.tmp, .corrupt, …).
    public static func step(ofFileName name: String) -> Int? {
        guard name.hasPrefix("step-"), name.hasSuffix(".h5") else { return nil }
        let digits = name.dropFirst(5).dropLast(3)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    public func url(step: Int) -> URL { url.appendingPathComponent(Self.fileName(step: step)) }

    /// The checkpoints present, oldest step first (not checked: see `latestValid`).
    public func checkpoints() throws -> [(step: Int, url: URL)] {
        try names().compactMap { n in Self.step(ofFileName: n).map { ($0, url.appendingPathComponent(n)) } }
            .sorted { $0.step < $1.step }
    }

    /// Writes `contents` as the checkpoint of `step` (atomically, see CheckpointWriter), then
    /// deletes the oldest ones beyond `keepLast`. Throws `.alreadyExists` if that step is saved.
    @discardableResult
    public func save(_ contents: CheckpointContents, step: Int) throws -> URL {
        guard step >= 0 else {
            throw CheckpointError.invalidContents(file: url.path, field: "step", reason: "\(step) is negative")
        }
        try removeLeftovers()
        let dest = url(step: step)
        try CheckpointWriter.write(contents, to: dest)
        if keepLast > 0 {
            let others = try checkpoints().filter { $0.step != step }
            for old in others.dropLast(max(keepLast - 1, 0)) {
                if unlink(old.url.path) != 0 && errno != ENOENT {
                    throw posixError(old.url.path, "cannot remove an old checkpoint (keepLast \(keepLast))")
                }
            }
        }
        return dest
    }

    /// Removes `*.h5.tmp` files: the remains of a save interrupted by a crash. Only the
    /// directory's writer should call this (`save` does).
    @discardableResult
    public func removeLeftovers() throws -> [URL] {
        var removed: [URL] = []
        for n in try names() where n.hasSuffix(".h5.tmp") {
            let u = url.appendingPathComponent(n)
            if unlink(u.path) == 0 { removed.append(u) }
        }
        return removed
    }

    /// The newest checkpoint that opens, passes its checks and loads, with everything in it read
    /// into new tensors. See `latestValid(_:)`.
    public func latestValid() throws -> (url: URL, contents: CheckpointContents)? {
        try latestValid { try $0.readAll() }.map { ($0.url, $0.value) }
    }

    /// Tries checkpoints newest first: opens each, lets `load` read what it needs (e.g. into the
    /// trainer's flat blocks), then checks whatever `load` did not read, so every byte of the
    /// chosen file has been verified once. A damaged file (truncated, corrupted, not a
    /// checkpoint) is renamed to NAME.corrupt, noted in `warnings`, and the previous one tried.
    /// Returns nil when no checkpoint is left. Other errors — a newer format, a model whose names
    /// or shapes differ, an I/O error listing the folder — are thrown: an earlier checkpoint
    /// would not fix them, and silently starting over would hide them.
    ///
    /// `load` may have written into its destination before a damaged file was detected; the
    /// next attempt overwrites it, and when nil is returned the caller must re-initialise.
    public func latestValid<T>(_ load: (CheckpointReader) throws -> T) throws -> (url: URL, value: T)? {
        // One warning per damaged file as it is found, then what was decided once every
        // candidate was tried (not before: an earlier file may be damaged too).
        var skipped = 0
        func note(using: String) { if skipped > 0 { warnings.append(using) } }
        for (_, file) in try checkpoints().reversed() {
            let result: T
            do {
                let reader = try CheckpointReader(url: file)
                defer { reader.close() }
                result = try load(reader)
                try reader.verifyUnread()
            } catch let e as CheckpointError where e.isDamage {
                let moved = (movesDamagedAside ? quarantine(file) : nil).map { "; moved aside to \($0)" } ?? ""
                warnings.append("checkpoint \(file.lastPathComponent) is \(e.damageKind) (\(e.reason))\(moved)")
                skipped += 1
                continue
            }
            note(using: "resuming from \(file.lastPathComponent), the newest valid checkpoint")
            return (file, result)
        }
        note(using: "no valid checkpoint is left (\(skipped) damaged)")
        return nil
    }

    /// Renames a damaged checkpoint to NAME.corrupt (NAME.corrupt-2, … if taken); its new name,
    /// or nil when the rename failed (the file then stays, and is skipped again next time).
    private func quarantine(_ file: URL) -> String? {
        var n = 1
        while true {
            let name = file.lastPathComponent + (n == 1 ? ".corrupt" : ".corrupt-\(n)")
            let dest = url.appendingPathComponent(name).path
            if !exists(dest) { return rename(file.path, dest) == 0 ? name : nil }
            n += 1
        }
    }

    private func names() throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: url.path)
        } catch {
            throw CheckpointError.io(
                file: url.path, reason: "cannot list the checkpoint directory: \(error.localizedDescription)")
        }
    }
}
