// Writes one TensorBoard event file: the file_version record, then events buffered until `flush`,
// which hands each batch to the kernel in one write. Nothing is fsynced: a crash loses at most
// the records since the last flush, and a record torn by it is where readers stop.
import Foundation

public final class EventFileWriter {
    public let url: URL
    let handle: FileHandle
    var pending: [UInt8] = []

    /// Creates `directory` and in it `events.out.tfevents.<unix seconds>.<host>` (TensorBoard finds
    /// event files by "tfevents" in the name and reads a folder's files in name order, so later
    /// starts sort after earlier ones). A file of that name from a start within the same second is
    /// appended to rather than replaced.
    public init(directory: URL, now: Date = Date(), host: String = EventFileWriter.hostName()) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        url = directory.appendingPathComponent(EventFileWriter.fileName(time: now, host: host))
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? nil
        if size == nil, !FileManager.default.createFile(atPath: url.path, contents: nil) {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
        }
        handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        if (size ?? 0) == 0 {
            add(Event(wallTime: now.timeIntervalSince1970, step: 0, what: .fileVersion(Event.fileVersion)))
            try flush()
        }
    }

    public static func fileName(time: Date, host: String) -> String {
        "events.out.tfevents.\(Int(time.timeIntervalSince1970)).\(host.replacingOccurrences(of: "/", with: "_"))"
    }

    public static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "localhost" }
        let name = String(cString: buf)
        return name.isEmpty ? "localhost" : name
    }

    /// Buffers an event until the next `flush`.
    public func add(_ event: Event) { pending += TFRecord.frame(event.encoded()) }

    /// One event holding several scalars of a step.
    public func add(scalars: [(tag: String, value: Float)], step: Int, wallTime: Date = Date()) {
        add(
            Event(
                wallTime: wallTime.timeIntervalSince1970, step: Int64(step),
                what: .summary(scalars.map { SummaryValue.scalar($0.tag, $0.value) })))
    }

    /// An encoded image (PNG) of a step; `colorspace` 3 is RGB.
    public func add(image tag: String, _ image: EncodedImage, step: Int, wallTime: Date = Date()) {
        add(
            Event(
                wallTime: wallTime.timeIntervalSince1970, step: Int64(step),
                what: .summary([SummaryValue(tag: tag, kind: .image(image))])))
    }

    /// Writes the buffered records.
    public func flush() throws {
        guard !pending.isEmpty else { return }
        try handle.write(contentsOf: pending)
        pending.removeAll(keepingCapacity: true)
    }

    deinit {
        try? flush()
        try? handle.close()
    }
}
