// Unknown keys in a config section: what the message says and which valid key a misspelling was
// probably meant to be. YAML readers ignore keys they are not asked for, so a misspelt option
// (`checkpoint_evry`, `gradclip`) would silently train on the default; every section refuses
// them instead. It lives here, the lowest module that reads configs, so model files and run
// configs word the refusal the same way.

public enum ConfigKeys {
    /// "unknown key K (did you mean V?)": what is wrong with `key` among the `valid` keys.
    public static func unknown(_ key: String, valid: [String]) -> String {
        "unknown key \(key)" + (closest(to: key, among: valid).map { " (did you mean \($0)?)" } ?? "")
    }

    /// "one of the keys a, b, c" (or "no keys" for a section that takes none).
    public static func expected(_ valid: [String]) -> String {
        valid.isEmpty ? "no keys in this section" : "one of the keys \(valid.joined(separator: ", "))"
    }

    /// The valid key `key` was most likely meant to be, or nil when none is close: the same key
    /// spelt with other separators or case (`gradClip`, `grad-clip`), else the nearest within a
    /// few edits (a third of the valid key's length, 1…3), else the one valid key `key` begins
    /// (`warmup` → `warmup_steps`).
    public static func closest(to key: String, among valid: [String]) -> String? {
        func squeezed(_ s: String) -> String { s.lowercased().filter { $0 != "_" && $0 != "-" && $0 != " " } }
        if let same = valid.first(where: { squeezed($0) == squeezed(key) }) { return same }
        let lower = key.lowercased()
        var best: (key: String, distance: Int)? = nil
        for v in valid {
            let d = editDistance(lower, v.lowercased())
            if d <= max(1, min(3, v.count / 3)), d < (best?.distance ?? .max) { best = (v, d) }
        }
        if let best { return best.key }
        let extended = valid.filter { $0.lowercased().hasPrefix(lower + "_") }
        return key.count >= 3 && extended.count == 1 ? extended[0] : nil
    }

    /// Edits (insert, delete, replace, swap two neighbours) turning `a` into `b`: the optimal
    /// string alignment distance, so a swapped pair (`wieght`) costs one edit as a typist sees it.
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}
