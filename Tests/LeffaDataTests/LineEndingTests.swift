// Pair lists as copies of the datasets hold them: LF, CRLF (Windows), lone CR (old Macs), a UTF-8
// byte-order mark, trailing blank lines. Every variant parses to the same pairs with the same line
// numbers, in the helper and through each dataset reader.
import Foundation
import XCTest
import TestSupport
@testable import LeffaData

/// `lines` joined by `ending`, with an optional byte-order mark and `trailing` extra endings.
private func text(_ lines: [String], _ ending: String, bom: Bool = false, trailing: Int = 1) -> String {
    (bom ? "\u{FEFF}" : "") + lines.joined(separator: ending) + String(repeating: ending, count: trailing)
}

private let endings: [(name: String, ending: String)] = [("LF", "\n"), ("CRLF", "\r\n"), ("CR", "\r")]

final class LineEndingTests: XCTestCase {
    func testTextLinesSplitsEveryEnding() {
        for (name, e) in endings {
            XCTAssertEqual(textLines(text(["a b", "", "c"], e)), ["a b", "", "c"], name)
            XCTAssertEqual(textLines(text(["a b", "c"], e, trailing: 0)), ["a b", "c"], "\(name), no final ending")
            XCTAssertEqual(textLines(text(["a", "b"], e, trailing: 3)), ["a", "b", "", ""], "\(name), trailing blank lines")
            XCTAssertEqual(textLines(text(["a", "b"], e, bom: true)), ["a", "b"], "\(name) with a byte-order mark")
        }
        XCTAssertEqual(textLines("a\r\nb\nc\rd"), ["a", "b", "c", "d"], "mixed endings")
        XCTAssertEqual(textLines("a\r\r\nb"), ["a", "", "b"], "CR then CRLF: two line breaks")
        XCTAssertEqual(textLines("a\n\rb"), ["a", "", "b"], "LF then CR: two line breaks, not one")
        XCTAssertEqual(textLines(""), [])
        XCTAssertEqual(textLines("\u{FEFF}"), [])
        XCTAssertEqual(textLines("é\r\nñ ü"), ["é", "ñ ü"], "non-ASCII names")
        XCTAssertEqual(textLines("a\u{FEFF}b"), ["a\u{FEFF}b"], "only a leading mark is dropped")
    }

    func testPairsFileGivesTheSamePairsAndLineNumbers() throws {
        let dir = try scratchDirectory(self)
        let lines = ["# comment", "a.jpg b.jpg", "", "c.jpg\td.jpg  ", "e.jpg f.jpg"]
        let url = dir.appendingPathComponent("pairs.txt")
        try writeText(text(lines, "\n"), url)
        let reference = PairsFile.read(url, columns: 2...2, expected: "person.jpg cloth.jpg")
        XCTAssertEqual(reference.lines.map(\.line), [2, 4, 5])
        XCTAssertEqual(reference.lines.map(\.fields), [["a.jpg", "b.jpg"], ["c.jpg", "d.jpg"], ["e.jpg", "f.jpg"]])
        XCTAssertTrue(reference.problems.isEmpty)
        for (name, e) in endings {
            for bom in [false, true] {
                for trailing in [0, 1, 4] {
                    try writeText(text(lines, e, bom: bom, trailing: trailing), url)
                    let r = PairsFile.read(url, columns: 2...2, expected: "person.jpg cloth.jpg")
                    let what = "\(name), byte-order mark \(bom), \(trailing) trailing ending(s)"
                    XCTAssertEqual(r.lines, reference.lines, what)
                    XCTAssertTrue(r.problems.isEmpty, "\(what): \(r.problems.map(\.error.description))")
                }
            }
        }
    }

    func testMalformedLineKeepsItsNumber() throws {
        let dir = try scratchDirectory(self)
        let url = dir.appendingPathComponent("test_pairs.txt")
        for (name, e) in endings {
            for bom in [false, true] {
                try writeText(text(["a.jpg b.jpg", "", "c.jpg d.jpg x.jpg", "e.jpg f.jpg"], e, bom: bom, trailing: 2), url)
                let r = PairsFile.read(url, columns: 2...2, expected: "person.jpg cloth.jpg")
                let what = "\(name), byte-order mark \(bom)"
                XCTAssertEqual(r.lines.map(\.line), [1, 4], what)
                XCTAssertEqual(r.problems.count, 1, what)
                let p = try XCTUnwrap(r.problems.first?.error, what)
                XCTAssertEqual(p.kind, .malformed, what)
                XCTAssertEqual(p.line, 3, what)
                XCTAssertTrue("\(p)".contains("test_pairs.txt") && "\(p)".contains("\"c.jpg d.jpg x.jpg\" has 3 field(s)"), "\(what): \(p)")
            }
        }
    }

    func testEveryReaderAcceptsWindowsAndOldMacLists() throws {
        // VITON-HD, CRLF with a byte-order mark.
        let viton = try scratchDirectory(self).appendingPathComponent("viton")
        try makeVitonFixture(viton, names: ["a.jpg", "b.jpg"])
        try writeText(text(["a.jpg b.jpg", "b.jpg a.jpg"], "\r\n", bom: true), viton.appendingPathComponent("train_pairs.txt"))
        let v = VitonHDDataset(root: viton, pairing: .unpaired)
        XCTAssertEqual(v.pairs, [PairLine(line: 1, fields: ["a.jpg", "b.jpg"]), PairLine(line: 2, fields: ["b.jpg", "a.jpg"])])
        XCTAssertTrue(v.check().errors.isEmpty, v.check().report)

        // DeepFashion, CSV with its header after a byte-order mark, lone-CR endings.
        let df = try scratchDirectory(self).appendingPathComponent("deepfashion")
        for (k, n) in ["a.jpg", "b.jpg"].enumerated() { try write(gradientImage(64, 48, seed: k), df.appendingPathComponent("train/\(n)")) }
        try writeText(text(["from,to", "a.jpg,b.jpg", "b.jpg,a.jpg"], "\r", bom: true, trailing: 2), df.appendingPathComponent("fasion-resize-pairs-train.csv"))
        let d = DeepFashionDataset(root: df)
        XCTAssertEqual(d.pairs, [PairLine(line: 2, fields: ["a.jpg", "b.jpg"]), PairLine(line: 3, fields: ["b.jpg", "a.jpg"])])
        XCTAssertTrue(d.indexProblems.errors.isEmpty, d.indexProblems.report)

        // DressCode, a root list with a category column, CRLF; the malformed line keeps its number.
        let dc = try scratchDirectory(self).appendingPathComponent("dresscode")
        for (k, id) in ["000001", "000002"].enumerated() {
            try write(gradientImage(64, 48, seed: k), dc.appendingPathComponent("upper_body/images/\(id)_0.jpg"))
            try write(gradientImage(64, 48, seed: k + 50), dc.appendingPathComponent("upper_body/images/\(id)_1.jpg"))
        }
        try writeText(text(["000001_0.jpg 000001_1.jpg upper_body", "000002_0.jpg", "000002_0.jpg 000002_1.jpg upper_body"], "\r\n"),
                      dc.appendingPathComponent("train_pairs.txt"))
        let c = DressCodeDataset(root: dc, categories: [.upperBody])
        XCTAssertEqual(c.count, 2, c.indexProblems.report)
        if c.count == 2 { XCTAssertEqual(c.recipe(at: 1).reference.lastPathComponent, "000002_1.jpg") }
        let malformed = c.indexProblems.errors.filter { $0.error.kind == .malformed }
        XCTAssertEqual(malformed.map(\.error.line), [2], c.indexProblems.report)
    }
}
