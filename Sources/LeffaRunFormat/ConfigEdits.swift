// Changing a run's settings on purpose, and only on purpose: `init --set a.b=value` overrides keys
// of the config file (validated like the file, recorded in the history); the hash of
// RUN/config.yaml in state.json makes a later hand edit visible, and the worker refuses to train
// on an edited config until `leffa-coord config --accept-edit` confirms it.
import Foundation
import Yams
import LeffaCheckpoint

/// xxh64 of a config's text, as hex.
public func configHash(_ text: String) -> String {
    var t = text
    // The bytes of the string's own UTF-8 storage, valid inside the closure only.
    return t.withUTF8 { String(XXHash64.hash(UnsafeRawBufferPointer($0)), radix: 16) }
}

public enum ConfigOverrides {
    /// `text` with every `KEY=VALUE` of `sets` applied (KEY: dotted path, list items as
    /// `stages[1].lr`; VALUE: YAML, so `1.0e-4`, `true`, `[unet]` keep their types). The result
    /// starts with a comment naming the source and the overrides; comments of the source are not
    /// kept (the source file keeps them).
    public static func apply(_ sets: [String], to text: String, source: String) throws -> String {
        guard !sets.isEmpty else { return text }
        guard var root = try Yams.compose(yaml: text) else {
            throw RunError("\(source): empty config, nothing to override")
        }
        for s in sets {
            guard let eq = s.firstIndex(of: "="), eq != s.startIndex else {
                throw RunError("--set \(s): expected KEY=VALUE, e.g. --set stages[0].lr=1.0e-4")
            }
            let key = String(s[..<eq]), raw = String(s[s.index(after: eq)...])
            let value = (try? Yams.compose(yaml: raw)) ?? nil ?? Yams.Node("")
            root = try set(root, path: try components(key, whole: s), value: value, at: "", whole: s)
        }
        let body = try Yams.serialize(node: root)
        return "# from \(describe(sets, from: source))\n" + body
    }

    /// "FILE with --set A=1 --set B=2": where an overridden config came from.
    public static func describe(_ sets: [String], from source: String) -> String {
        "\(source) with " + sets.map { "--set \($0)" }.joined(separator: " ")
    }

    enum Component { case key(String), index(Int) }

    static func components(_ key: String, whole: String) throws -> [Component] {
        var out: [Component] = []
        for part in key.split(separator: ".", omittingEmptySubsequences: false) {
            var p = Substring(part)
            let name = p.prefix { $0 != "[" }
            guard !name.isEmpty else { throw RunError("--set \(whole): empty key in \(key)") }
            out.append(.key(String(name)))
            p = p.dropFirst(name.count)
            while p.first == "[" {
                guard let close = p.firstIndex(of: "]"), let i = Int(p[p.index(after: p.startIndex)..<close]), i >= 0
                else { throw RunError("--set \(whole): expected [N] after \(name)") }
                out.append(.index(i))
                p = p[p.index(after: close)...]
            }
            guard p.isEmpty else { throw RunError("--set \(whole): cannot read \(part)") }
        }
        return out
    }

    static func set(_ node: Yams.Node, path: [Component], value: Yams.Node, at prefix: String, whole: String) throws
        -> Yams.Node
    {
        guard let first = path.first else { return value }
        let rest = Array(path.dropFirst())
        switch first {
        case .key(let k):
            guard var m = node.mapping ?? (node.null != nil ? Yams.Node.Mapping([]) : nil) else {
                throw RunError("--set \(whole): \(prefix.isEmpty ? "the top level" : prefix) is not a mapping")
            }
            let child = m[Yams.Node(k)] ?? Yams.Node("~")
            m[Yams.Node(k)] = try set(child, path: rest, value: value, at: prefix + k, whole: whole)
            return .mapping(m)
        case .index(let i):
            guard var q = node.sequence else { throw RunError("--set \(whole): \(prefix) is not a list") }
            guard i < q.count else { throw RunError("--set \(whole): \(prefix) has \(q.count) item(s), no [\(i)]") }
            q[i] = try set(q[i], path: rest, value: value, at: prefix + "[\(i)].", whole: whole)
            return .sequence(q)
        }
    }
}

extension RunDirectory {
    /// Refuses a config.yaml edited since init or the last `config --accept-edit`.
    public func checkConfigUnedited(_ config: RunConfig) throws {
        let now = configHash(config.text)
        guard let recorded = try readState().configHash, recorded != now else { return }
        throw RunError(
            "\(configURL.path): edited since the run recorded it (hash \(now), recorded \(recorded)); "
                + "an edit is never used silently. Check it with `leffa-coord config --run \(url.path)` and confirm with "
                + "`leffa-coord config --run \(url.path) --accept-edit` (recorded in the history), or undo the edit")
    }

    /// Records the current config.yaml (validated) as the run's config; returns what the history says.
    @discardableResult
    public func acceptConfigEdit() throws -> String {
        let config = try readConfig()
        let hash = configHash(config.text)
        var said = ""
        try updateState { s in
            said =
                s.configHash == hash
                ? "config.yaml unchanged (hash \(hash))" : "config.yaml edit accepted (hash \(s.configHash ?? "none") → \(hash))"
            if s.configHash != hash { s.note(said) }
            s.configHash = hash
        }
        return said
    }
}
