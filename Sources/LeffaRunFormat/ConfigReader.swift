// Typed access to the sections of a run config, with errors that carry each field's full path.
// Every reader records the keys it is asked for; once a section is parsed (`finish()`),
// `checkUnknownKeys()` refuses every key of it that no parsing code asked for, naming the nearest
// valid one. So a section's valid keys are exactly the keys its parsing reads: adding an option to
// the parser makes it valid, and there is no second list to forget.
import Foundation
import Yams
import LeffaModels
import LeffaData

/// The keys one section was asked for, in the order the parser asked (the order of the message),
/// and whether its parser is done with it (only then are the others known to be unknown).
final class AskedKeys {
    private(set) var names: [String] = []
    var complete = false
    func note(_ key: String) { if !names.contains(key) { names.append(key) } }
}

/// Every section read while parsing one file, so unknown keys are checked once all are known and a
/// key that belongs to another section can be pointed there.
final class ConfigSections {
    struct Section { let path: String; let node: Yams.Node.Mapping; let asked: AskedKeys }
    private(set) var all: [Section] = []
    func add(_ s: Section) { all.append(s) }
    /// Every value the parser used, file or default, in the order asked: the effective config.
    private(set) var settings: [ConfigSetting] = []
    private var slot: [String: Int] = [:]
    func record(_ key: String, _ value: String, fromFile: Bool) {
        let s = ConfigSetting(key: key, value: value, fromFile: fromFile)
        if let i = slot[key] { settings[i] = s } else { slot[key] = settings.count; settings.append(s) }
    }
}

/// One value of the effective config: its full path, its YAML text, and whether the file set it.
public struct ConfigSetting: Sendable, Equatable {
    public var key: String, value: String, fromFile: Bool
}

/// One mapping of a run config (a section, a stage, a stage's leffa block).
struct Reader {
    let file: String
    let node: Yams.Node.Mapping
    /// "training." for the training section, "" at the top level.
    let path: String
    let asked = AskedKeys()
    let sections: ConfigSections

    /// The reader of a file's top level.
    init(file: String, root: Yams.Node.Mapping) {
        self.init(file: file, node: root, path: "", sections: ConfigSections())
    }
    private init(file: String, node: Yams.Node.Mapping, path: String, sections: ConfigSections) {
        self.file = file; self.node = node; self.path = path; self.sections = sections
        sections.add(.init(path: path, node: node, asked: asked))
    }
    /// The reader of a mapping found under this one at `path` (e.g. a stage of the list).
    func child(_ node: Yams.Node.Mapping, path: String) -> Reader {
        Reader(file: file, node: node, path: path, sections: sections)
    }

    /// The value of `key` (nil when absent), recording that the parser reads `key`.
    func value(_ key: String) -> Yams.Node? {
        asked.note(key)
        let n = node[Yams.Node(key)]
        // Sections and lists of sections (the stages) are recorded key by key as they are read.
        if let n, n.mapping == nil, !(n.sequence?.contains { $0.mapping != nil } ?? false) {
            sections.record(path + key, Self.yaml(n), fromFile: true)
        }
        return n
    }
    /// The value used when the file does not set `key`.
    func usedDefault(_ key: String, _ value: String) { sections.record(path + key, value, fromFile: false) }

    /// A node as one line of YAML: a scalar as written, a list in flow style.
    static func yaml(_ n: Yams.Node) -> String {
        switch n {
        case .scalar(let s): return s.style == .doubleQuoted || s.style == .singleQuoted ? "\"\(s.string)\"" : s.string
        case .sequence(let q): return "[" + q.map(yaml).joined(separator: ", ") + "]"
        case .mapping(let m): return "{" + m.map { "\(yaml($0.key)): \(yaml($0.value))" }.joined(separator: ", ") + "}"
        case .alias: return "*alias"
        }
    }
    /// Marks keys that another parser reads from this section's text (the model sizes) as valid.
    func readElsewhere(_ keys: [String]) { keys.forEach(asked.note) }

    func fail(_ key: String, _ expected: String) -> ConfigError {
        ConfigError(file: file, field: path + key, expected: expected)
    }

    /// A required key is missing: the expected form, and the key present that may be its misspelling.
    func missing(_ key: String, _ expected: String) -> ConfigError {
        let near = node.keys.compactMap(\.string).first {
            !asked.names.contains($0) && ConfigKeys.closest(to: $0, among: [key]) != nil
        }
        return fail(key, "\(expected) (required\(near.map { "; is \($0) a misspelling of it?" } ?? ""))")
    }

    /// "a list", "a mapping" or the scalar itself: what was found where something else was expected.
    static func describe(_ n: Yams.Node) -> String {
        switch n {
        case .scalar(let s):
            // A quoted scalar is a string however it reads: `lr: "1.0e-3"` is not a number.
            return s.style == .singleQuoted || s.style == .doubleQuoted ? "the string \"\(s.string)\" (remove the quotes)" : s.string
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        case .alias: return "an alias"
        }
    }

    // MARK: Sections

    /// A sub-mapping that may be absent (or null); present as anything else is an error, not an
    /// empty section (`training: 5` would otherwise train on every default).
    func optionalSection(_ key: String, expected: String = "a mapping") throws -> Reader? {
        guard let n = value(key), n.null == nil else { return nil }
        guard let m = n.mapping else { throw fail(key, "\(expected), got \(Self.describe(n))") }
        return child(m, path: path + key + ".")
    }
    /// A sub-mapping whose keys all have defaults: absent or null reads as empty.
    func section(_ key: String, expected: String = "a mapping") throws -> Reader {
        try optionalSection(key, expected: expected) ?? child(Yams.Node.Mapping([]), path: path + key + ".")
    }

    /// Says the parser has asked for every key it reads in this section.
    func finish() { asked.complete = true }

    /// Refuses unknown keys in every finished section of this file, in the order they were read.
    /// Also call it when parsing failed: a misspelt key is often the cause (`spce: pixel` leaves
    /// the run in latent space, whose sizes the stages then miss), so it is reported first.
    func checkUnknownKeys() throws {
        for s in sections.all where s.asked.complete { try Self.check(s, file: file, among: sections) }
    }

    /// The first key of `s` nothing asked for, as an error naming the closest valid key, or the
    /// section it belongs in when it is another section's key (`warmup_steps` under training).
    static func check(_ s: ConfigSections.Section, file: String, among sections: ConfigSections) throws {
        let valid = s.asked.names
        for k in s.node.keys {
            let key = k.string ?? describe(k)
            guard !valid.contains(key) else { continue }
            var problem = ConfigKeys.unknown(key, valid: valid)
            if ConfigKeys.closest(to: key, among: valid) == nil,
                let home = sections.all.first(where: {
                    $0.path != s.path && $0.asked.complete && $0.asked.names.contains(key)
                })
            {
                // Stages share their keys: "stages[i]", not the first stage that had it.
                let name =
                    home.path.isEmpty
                    ? "the top level"
                    : String(home.path.dropLast()).replacingOccurrences(
                        of: #"^stages\[\d+\]"#, with: "stages[i]", options: .regularExpression)
                problem += " (\(key) is a key of \(name))"
            }
            throw ConfigError(file: file, field: s.path + key, expected: ConfigKeys.expected(valid), problem: problem)
        }
    }

    // MARK: Values

    func optionalString(_ key: String) throws -> String? {
        guard let n = value(key) else { usedDefault(key, "null"); return nil }
        guard let s = n.string, n.scalar != nil else { throw fail(key, "a string, got \(Self.describe(n))") }
        return s
    }
    func string(_ key: String, default d: String? = nil) throws -> String {
        if let s = try optionalString(key) { return s }
        if let d { usedDefault(key, d); return d }
        throw missing(key, "a string")
    }
    func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let n = value(key) else { usedDefault(key, "\(d)"); return d }
        guard let v = n.bool else { throw fail(key, "true or false, got \(Self.describe(n))") }
        return v
    }
    func optionalInt(_ key: String, min: Int) throws -> Int? {
        guard let n = value(key), n.null == nil else { usedDefault(key, "null"); return nil }
        guard let v = n.int, v >= min else { throw fail(key, "an integer ≥ \(min), got \(Self.describe(n))") }
        return v
    }
    func int(_ key: String, default d: Int? = nil, min: Int) throws -> Int {
        if let v = try optionalInt(key, min: min) { return v }
        if let d { usedDefault(key, "\(d)"); return d }
        throw missing(key, "an integer ≥ \(min)")
    }
    func optionalFloat(_ key: String, in range: ClosedRange<Float>) throws -> Float? {
        guard let n = value(key), n.null == nil else { usedDefault(key, "null"); return nil }
        guard let v = n.float.map(Float.init), range.contains(v) else {
            throw fail(key, "a number in \(range.lowerBound)…\(range.upperBound), got \(Self.describe(n))")
        }
        return v
    }
    func optionalFloat(_ key: String, in range: Range<Float>) throws -> Float? {
        guard let n = value(key), n.null == nil else { usedDefault(key, "null"); return nil }
        guard let v = n.float.map(Float.init), range.contains(v) else {
            throw fail(key, "a number in [\(range.lowerBound), \(range.upperBound)), got \(Self.describe(n))")
        }
        return v
    }
    func float(_ key: String, default d: Float? = nil, in range: ClosedRange<Float>) throws -> Float {
        if let v = try optionalFloat(key, in: range) { return v }
        if let d { usedDefault(key, "\(d)"); return d }
        throw missing(key, "a number in \(range.lowerBound)…\(range.upperBound)")
    }
    func float(_ key: String, default d: Float, in range: Range<Float>) throws -> Float {
        if let v = try optionalFloat(key, in: range) { return v }
        usedDefault(key, "\(d)")
        return d
    }
    /// Double precision, for values used in double-precision formulas (the EMA schedule).
    func optionalDouble(_ key: String, in range: Range<Double>) throws -> Double? {
        guard let n = value(key), n.null == nil else { usedDefault(key, "null"); return nil }
        guard let v = n.float, range.contains(v) else {
            throw fail(key, "a number in [\(range.lowerBound), \(range.upperBound)), got \(Self.describe(n))")
        }
        return v
    }
    func double(_ key: String, default d: Double, in range: ClosedRange<Double>) throws -> Double {
        guard let n = value(key), n.null == nil else { usedDefault(key, "\(d)"); return d }
        guard let v = n.float, range.contains(v) else {
            throw fail(key, "a number in \(range.lowerBound)…\(range.upperBound), got \(Self.describe(n))")
        }
        return v
    }
    /// A finite number above `bound` (nil when absent or null), in double precision.
    func optionalDouble(_ key: String, above bound: Double, unit: String) throws -> Double? {
        guard let n = value(key), n.null == nil else { usedDefault(key, "null"); return nil }
        guard let v = n.float, v.isFinite, v > bound else {
            throw fail(key, "a number of \(unit) > \(bound == 0 ? "0" : "\(bound)"), got \(Self.describe(n))")
        }
        return v
    }
    func strings(_ key: String, default d: [String]) throws -> [String] {
        guard let n = value(key) else { usedDefault(key, "[" + d.joined(separator: ", ") + "]"); return d }
        guard let seq = n.sequence else { throw fail(key, "a list of strings, got \(Self.describe(n))") }
        return try seq.map {
            guard let s = $0.string, $0.scalar != nil else { throw fail(key, "a list of strings") }; return s
        }
    }
    /// One string or a list of strings (nil when absent or null), as a list.
    func stringOrStrings(_ key: String, expected: String) throws -> [String]? {
        guard let n = value(key), n.null == nil else { usedDefault(key, "null"); return nil }
        if n.scalar != nil, let s = n.string { return [s] }
        guard let seq = n.sequence, !seq.isEmpty else {
            throw fail(key, "\(expected), got \(n.sequence != nil ? "an empty list" : Self.describe(n))")
        }
        return try seq.map {
            guard let s = $0.string, $0.scalar != nil else {
                throw fail(key, "\(expected), got \(Self.describe($0)) in the list")
            }; return s
        }
    }
    /// "512x384" (height × width).
    func size(_ key: String) throws -> (Int, Int) {
        guard let s = try optionalString(key) else { throw missing(key, "HEIGHTxWIDTH like 512x384") }
        guard let size = ImageSize(parsing: s) else { throw fail(key, "HEIGHTxWIDTH like 512x384, got \(s)") }
        return (size.height, size.width)
    }
}
