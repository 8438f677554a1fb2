// Shared by the SafeTensors tests: scratch directories, hand-made files, the golden fixtures.
import Foundation
import XCTest
import TestSupport
@testable import SafeTensors

/// A file from a literal header (padded with spaces to `pad` bytes unless nil) and data bytes;
/// `length` overrides the 8-byte header length field.
func rawFile(header: String, data: [UInt8] = [], length: UInt64? = nil) -> [UInt8] {
    var h = Array(header.utf8)
    while h.count % 8 != 0 { h.append(UInt8(ascii: " ")) }
    let n = length ?? UInt64(h.count)
    return withUnsafeBytes(of: n.littleEndian) { Array($0) } + h + data
}

/// Plain fopen/fwrite: Foundation's `Data.write` costs milliseconds per file on Linux, too slow
/// for the damaged-file loop.
func writeBytes(_ bytes: [UInt8], _ url: URL) throws {
    guard let f = fopen(url.path, "wb") else { throw CocoaError(.fileWriteUnknown) }
    defer { fclose(f) }
    if !bytes.isEmpty && fwrite(bytes, 1, bytes.count, f) != bytes.count { throw CocoaError(.fileWriteUnknown) }
}

/// Little-endian bytes of float32 values.
func f32Bytes(_ v: [Float]) -> [UInt8] { v.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian) { Array($0) } } }

/// Opening must fail with a SafeTensorsError whose message contains every one of `fragments`.
func assertOpenFails(_ url: URL, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try SafeTensorsFile(url: url)
        XCTFail("opened a bad file \(url.path)", file: file, line: line)
    } catch let e as SafeTensorsError {
        for f in fragments { XCTAssertTrue("\(e)".contains(f), "'\(e)' does not mention '\(f)'", file: file, line: line) }
    } catch { XCTFail("not a SafeTensorsError: \(error)", file: file, line: line) }
}

/// The call must throw a SafeTensorsError whose message contains every one of `fragments`.
func assertThrows<T>(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("expected an error mentioning \(fragments)", file: file, line: line)
    } catch let e as SafeTensorsError {
        for f in fragments { XCTAssertTrue("\(e)".contains(f), "'\(e)' does not mention '\(f)'", file: file, line: line) }
        XCTAssertEqual(e.errorDescription, e.description, file: file, line: line)
    } catch { XCTFail("not a SafeTensorsError: \(error)", file: file, line: line) }
}

/// ../shared/fixtures/leffa_tiny, when it is there.
func fixtureDirectory() -> URL? {
    FileManager.default.fileExists(atPath: Fixtures.leffaTiny.path) ? Fixtures.leffaTiny : nil
}
