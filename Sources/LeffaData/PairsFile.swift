// Reading pair lists: VITON-HD "person.jpg cloth.jpg", DressCode with an optional category
// column, DeepFashion CSVs with a "from,to" header. Every line keeps its 1-based number so that a
// problem found later ("names an absent file") points back to the line to fix. Malformed lines
// are reported, not fatal: the remaining lines still index the dataset.

import Foundation

/// One non-blank, non-comment line of a pairs file, split into fields.
public struct PairLine: Equatable, Sendable {
    public var line: Int
    public var fields: [String]
}

enum PairsFile {
    /// Lines of `url` (ended by LF, CRLF or CR, after an optional byte-order mark: `textLines`)
    /// split on commas (when the line has one) or whitespace. Blank lines and lines starting with
    /// '#' are skipped; a first line none of whose fields has a file extension and which are plain
    /// words (e.g. "from,to") is taken as a CSV header and skipped. Lines whose field count is
    /// outside `columns` become `.malformed` problems naming the line and what was expected.
    static func read(_ url: URL, columns: ClosedRange<Int>, expected: String) -> (
        lines: [PairLine], problems: [DataProblem]
    ) {
        let bytes: [UInt8]
        do { bytes = try ImageIO.readBytes(url) } catch let e as DataError {
            var e = e
            e.field = "pairs file"
            if e.kind == .missing { e.hint = "expected a pair list with lines \"\(expected)\"" }
            return ([], [DataProblem(.error, e)])
        } catch {
            return (
                [],
                [DataProblem(.error, DataError(.unreadable, path: url.path, field: "pairs file", reason: "\(error)"))]
            )
        }
        guard let text = String(bytes: bytes, encoding: .utf8) else {
            return (
                [],
                [
                    DataProblem(
                        .error, DataError(.corrupt, path: url.path, field: "pairs file", reason: "not UTF-8 text"))
                ]
            )
        }
        var lines: [PairLine] = [], problems: [DataProblem] = []
        var first = true
        for (i, raw) in textLines(text).enumerated() {
            let s = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if s.isEmpty || s.hasPrefix("#") { continue }
            let fields: [String] =
                s.contains(",")
                ? s.split(separator: ",", omittingEmptySubsequences: false).map {
                    $0.trimmingCharacters(in: .whitespaces)
                }
                : s.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            defer { first = false }
            if first && isHeader(fields) { continue }
            if !columns.contains(fields.count) || fields.contains(where: \.isEmpty) {
                let shown = s.count > 120 ? String(s.prefix(117)) + "..." : s
                problems.append(
                    DataProblem(
                        .error,
                        DataError(
                            .malformed, path: url.path, field: "pairs file", line: i + 1, pairsFile: url.path,
                            reason: "\"\(shown)\" has \(fields.count) field(s); expected \"\(expected)\"")))
                continue
            }
            lines.append(PairLine(line: i + 1, fields: fields))
        }
        return (lines, problems)
    }

    /// Words only (letters, '_', '-', or empty as in ",from,to"), none a file name.
    static func isHeader(_ fields: [String]) -> Bool {
        fields.allSatisfy { f in
            (f as NSString).pathExtension.isEmpty
                && f.unicodeScalars.allSatisfy { CharacterSet.letters.contains($0) || $0 == "_" || $0 == "-" }
        }
    }
}
