// The event-file writer against known values: CRC-32C test vectors, the masked CRC, protobuf
// varints, and a file written by the `tensorboard` Python package (Fixtures/reference.tfevents,
// from Scripts/make_tensorboard_fixture.py) that the Swift writer must reproduce byte for byte;
// the reader stops at a torn or damaged tail and keeps what comes before it; a rewind drops the
// events after a step.
import Foundation
import XCTest

@testable import TensorBoard

final class TensorBoardTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    func fixture(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent(name)))
    }

    /// The events of reference.tfevents, as the fixture script builds them.
    func referenceEvents() throws -> [Event] {
        let png = try fixture("tiny.png")
        return [
            Event(wallTime: 1_767_225_600.25, step: 0, what: .fileVersion("brain.Event:2")),
            Event(
                wallTime: 1_767_225_601.5, step: 300,
                what: .summary([.scalar("loss/total", 0.25), .scalar("lr", 1e-4), .scalar("grad_norm", 0)])),
            Event(
                wallTime: 1_767_225_602.75, step: 300,
                what: .summary([
                    SummaryValue(
                        tag: "validation/0-000001",
                        kind: .image(EncodedImage(height: 2, width: 3, colorspace: 3, bytes: png)))
                ]))
        ]
    }

    func testCRC32CMatchesKnownValues() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        // RFC 3720 (iSCSI) B.4: 32 bytes of zeros, of ones, and ascending.
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.mask(0xE306_9283), 0xC78A_B0E5)
        XCTAssertEqual(CRC32C.masked(Array("123456789".utf8)), 0xC78A_B0E5)
    }

    func testProtobufVarintsAndFixedFields() {
        var w = ProtoWriter()
        w.int(2, 300)
        XCTAssertEqual(w.bytes, [0x10, 0xAC, 0x02])
        w = ProtoWriter()
        w.int(1, -1)
        XCTAssertEqual(w.bytes, [0x08] + [UInt8](repeating: 0xFF, count: 9) + [0x01], "negatives take ten bytes")
        w = ProtoWriter()
        w.float(2, 0.25)
        XCTAssertEqual(w.bytes, [0x15, 0x00, 0x00, 0x80, 0x3E])
        w = ProtoWriter()
        w.string(1, "lr")
        XCTAssertEqual(w.bytes, [0x0A, 0x02, 0x6C, 0x72])
        var r = ProtoReader(ArraySlice([0x10, 0xAC, 0x02, 0x15, 0x00, 0x00, 0x80, 0x3E]))
        XCTAssertEqual(try r.next()?.value.int, 300)
        XCTAssertEqual(try r.next()?.value.float, 0.25)
        XCTAssertNil(try r.next())
        var cut = ProtoReader(ArraySlice([0x0A, 0x05, 0x6C]))
        XCTAssertThrowsError(try cut.next(), "a length past the end")
    }

    /// The Swift encoding and framing of the fixture's events is the Python package's, byte for byte.
    func testRecordsMatchTheTensorBoardPackage() throws {
        let reference = try fixture("reference.tfevents")
        let ours = try referenceEvents().flatMap { TFRecord.frame($0.encoded()) }
        XCTAssertEqual(ours.count, reference.count)
        XCTAssertEqual(ours, reference)
        // The first record by hand: length 24, its masked CRC, then the data's.
        let first = [UInt8](reference.prefix(8 + 4 + 24 + 4))
        XCTAssertEqual(Array(first.prefix(8)), [24, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(Array(first[8..<12]), TFRecord.littleEndian(CRC32C.masked(first.prefix(8))))
        XCTAssertEqual(Array(first.suffix(4)), TFRecord.littleEndian(CRC32C.masked(first[12..<36])))
    }

    func testReaderReadsTheTensorBoardPackagesFile() throws {
        let read = EventFile.read(try fixture("reference.tfevents"))
        XCTAssertNil(read.problem)
        XCTAssertEqual(read.events, try referenceEvents())
    }

    /// Every cut inside the last record, and a flipped byte in its length or data: the reader keeps
    /// the records before it and says what stopped it.
    func testTornOrDamagedTailIsTolerated() throws {
        let bytes = try fixture("reference.tfevents")
        let events = try referenceEvents()
        let lastStart = TFRecord.scan(bytes).records[2].startIndex - 12
        for cut in lastStart..<bytes.count {
            let read = EventFile.read(Array(bytes.prefix(cut)))
            XCTAssertEqual(read.events, Array(events.prefix(2)), "cut at \(cut)")
            if cut == lastStart { XCTAssertNil(read.problem) } else { XCTAssertNotNil(read.problem, "cut at \(cut)") }
            XCTAssertEqual(TFRecord.scan(Array(bytes.prefix(cut))).validLength, lastStart)
        }
        for (at, what) in [(lastStart + 3, "length's checksum"), (bytes.count - 20, "data's checksum")] {
            var damaged = bytes
            damaged[at] ^= 0x40
            let read = EventFile.read(damaged)
            XCTAssertEqual(read.events, Array(events.prefix(2)))
            XCTAssertTrue(read.problem?.contains(what) == true, read.problem ?? "no problem reported")
        }
        // A huge length whose checksum matches: announced, not there.
        var huge = Array(bytes.prefix(lastStart)) + TFRecord.littleEndian(UInt64(1) << 62)
        huge += TFRecord.littleEndian(CRC32C.masked(huge.suffix(8)))
        let read = EventFile.read(huge)
        XCTAssertEqual(read.events.count, 2)
        XCTAssertTrue(read.problem?.contains("the file ends first") == true, read.problem ?? "")
    }

    func testRewindDropsLaterStepsAndTheTornTail() throws {
        var file = TFRecord.frame(Event(wallTime: 1, step: 0, what: .fileVersion(Event.fileVersion)).encoded())
        for s in 1...5 {
            file += TFRecord.frame(Event(wallTime: 1, step: Int64(s), what: .summary([.scalar("x", 1)])).encoded())
        }
        let r = EventFile.rewound(file, throughStep: 3)
        XCTAssertEqual(r.dropped, 2)
        XCTAssertNil(r.problem)
        XCTAssertEqual(EventFile.read(r.bytes).events.map(\.step), [0, 1, 2, 3])
        XCTAssertEqual(EventFile.read(r.bytes).events.first?.what, .fileVersion("brain.Event:2"))

        let same = EventFile.rewound(file, throughStep: 5)
        XCTAssertFalse(same.changed)
        XCTAssertEqual(same.bytes, file)

        let torn = EventFile.rewound(Array(file.dropLast(3)), throughStep: 9)
        XCTAssertTrue(torn.changed)
        XCTAssertEqual(torn.dropped, 0)
        XCTAssertEqual(EventFile.read(torn.bytes).events.map(\.step), [0, 1, 2, 3, 4])
        XCTAssertNil(EventFile.read(torn.bytes).problem)
    }

    /// The file is named for TensorBoard, starts with the version record, holds what was flushed,
    /// and a second writer in the same second appends to it without a second version record.
    func testWriterFileNameVersionRecordAndAppend() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tb-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let now = Date(timeIntervalSince1970: 1_767_225_600.5)
        var w: EventFileWriter? = try EventFileWriter(directory: dir, now: now, host: "node/7")
        XCTAssertEqual(w?.url.lastPathComponent, "events.out.tfevents.1767225600.node_7")
        w?.add(scalars: [("loss/total", 0.5)], step: 1, wallTime: now)
        XCTAssertEqual(EventFile.read([UInt8](try Data(contentsOf: w!.url))).events.count, 1, "buffered until flush")
        try w?.flush()
        var events = EventFile.read([UInt8](try Data(contentsOf: w!.url))).events
        XCTAssertEqual(events.map(\.step), [0, 1])
        XCTAssertEqual(events[0].what, .fileVersion("brain.Event:2"))
        XCTAssertEqual(events[1].what, .summary([.scalar("loss/total", 0.5)]))
        w = nil

        let again = try EventFileWriter(directory: dir, now: now, host: "node/7")
        again.add(scalars: [("loss/total", 0.25)], step: 2, wallTime: now)
        try again.flush()
        events = EventFile.read([UInt8](try Data(contentsOf: again.url))).events
        XCTAssertEqual(events.map(\.step), [0, 1, 2])
        XCTAssertEqual(EventFile.files(in: dir).map(\.lastPathComponent), [again.url.lastPathComponent])
    }
}
