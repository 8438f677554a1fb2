// The run's record of its data (RUN/data-manifest.tsv): every file the training and validation
// splits read, with its size and modification time. A resume compares the data against it, so a
// dataset replaced under a live run (another `synth`, a re-copied folder, an edited pairs file)
// stops the run with what changed instead of training on silently on other samples.
import Foundation
import LeffaData

public struct DataManifest: Equatable {
    public struct Entry: Equatable {
        /// Bytes, or -1 when the file is not there.
        public var size: Int64
        /// Modification time in nanoseconds since 1970.
        public var mtime: Int64
    }
    /// Paths relative to the data root (absolute when outside it).
    public var entries: [String: Entry]

    /// Stats `files` now.
    public static func take(_ files: [URL], root: URL) -> DataManifest {
        let base = root.standardizedFileURL.path + "/"
        var entries: [String: Entry] = [:]
        for u in files {
            let p = u.standardizedFileURL.path
            var st = stat()
            let e =
                stat(p, &st) == 0
                ? Entry(size: Int64(st.st_size), mtime: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
                : Entry(size: -1, mtime: 0)
            entries[p.hasPrefix(base) ? String(p.dropFirst(base.count)) : p] = e
        }
        return DataManifest(entries: entries)
    }

    /// The data files a run trains and validates on.
    public static func take(_ config: RunConfig, dataRoot: URL) -> DataManifest {
        var files = config.openDataset(root: dataRoot).files()
        if config.validation.enabled {
            let held = config.openDataset(root: dataRoot, split: config.validation.split ?? "test", pairing: .paired)
            if held.count > 0 { files += held.files() }
        }
        return take(files, root: dataRoot)
    }

    /// One line per file: path, size, mtime (tab-separated; paths never hold tabs or newlines
    /// in the layouts we read).
    public var text: String {
        "# leffa data manifest: path\tbytes\tmtime_ns\n"
            + entries.keys.sorted().map { k in "\(k)\t\(entries[k]!.size)\t\(entries[k]!.mtime)\n" }.joined()
    }

    public init(entries: [String: Entry]) { self.entries = entries }

    public init(text: String, source: String) throws {
        var entries: [String: Entry] = [:]
        for (i, line) in textLines(text).enumerated() where !line.isEmpty && !line.hasPrefix("#") {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard f.count == 3, let size = Int64(f[1]), let mtime = Int64(f[2]) else {
                throw RunError("\(source): line \(i + 1): expected path, bytes and mtime separated by tabs")
            }
            entries[String(f[0])] = Entry(size: size, mtime: mtime)
        }
        self.entries = entries
    }

    /// What differs from `old`, in words, at most `limit` files named.
    public func changes(since old: DataManifest, limit: Int = 5) -> [String] {
        var added: [String] = [], removed: [String] = [], resized: [String] = [], touched: [String] = []
        for (k, e) in entries {
            guard let o = old.entries[k], o.size >= 0 else { if e.size >= 0 { added.append(k) }; continue }
            if e.size < 0 { removed.append(k) } else if e.size != o.size { resized.append("\(k) (\(o.size) → \(e.size) bytes)") } else if e.mtime != o.mtime { touched.append(k) }
        }
        for (k, o) in old.entries where entries[k] == nil && o.size >= 0 { removed.append(k) }
        func line(_ what: String, _ xs: [String]) -> String? {
            guard !xs.isEmpty else { return nil }
            let s = xs.sorted()
            return "\(xs.count) file(s) \(what): " + s.prefix(limit).joined(separator: ", ") + (s.count > limit ? ", …" : "")
        }
        return [
            line("new", added), line("gone", removed), line("changed size", resized),
            line("rewritten (same size, newer time; a copy without preserved times does this too)", touched),
        ].compactMap { $0 }
    }
}

extension RunDirectory {
    public var dataManifestURL: URL { url.appendingPathComponent("data-manifest.tsv") }

    /// Rank 0 at a worker's start: records the data the first time, and afterwards compares.
    /// Changed data stops the run naming what changed, unless `accept` (then the new data is
    /// recorded, and the history says so). Returns a line for the log, or nil when nothing changed.
    public func checkData(_ config: RunConfig, accept: Bool) throws -> String? {
        let root = URL(fileURLWithPath: resolve(config.dataRoot))
        let now = DataManifest.take(config, dataRoot: root)
        guard let text = try? String(contentsOf: dataManifestURL, encoding: .utf8) else {
            try atomicWrite(Data(now.text.utf8), to: dataManifestURL)
            return "data: \(now.entries.count) files recorded in \(dataManifestURL.lastPathComponent)"
        }
        let before = try DataManifest(text: text, source: dataManifestURL.path)
        let changes = now.changes(since: before)
        if changes.isEmpty { return nil }
        guard accept else {
            throw RunError(
                "\(root.path): the data changed since the run recorded it in \(dataManifestURL.path):\n  "
                    + changes.joined(separator: "\n  ")
                    + "\nResuming would train on other samples than the checkpoints saw. Restore the data, or pass --accept-data-change (leffa-worker, or `leffa-coord run --accept-data-change`) to go on with it; that is recorded in the run's history."
            )
        }
        try atomicWrite(Data(now.text.utf8), to: dataManifestURL)
        try updateState { $0.note("data change accepted: " + changes.joined(separator: "; ")) }
        return "data change accepted and recorded: " + changes.joined(separator: "; ")
    }
}
