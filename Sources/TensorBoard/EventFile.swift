// Reading event files back: to rewind a stream to a resumed step (the events after it are
// dropped, so a restarted run shows each step once) and to check what was written. Stops at a
// torn or damaged record, as TensorBoard's reader does.
import Foundation

public enum EventFile {
    /// Whether TensorBoard takes `name` for an event file.
    public static func isEventFile(_ name: String) -> Bool { name.contains("tfevents") }

    /// A folder's event files in the order TensorBoard reads them (by name); none when it is missing.
    public static func files(in directory: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter(isEventFile).sorted().map { directory.appendingPathComponent($0) }
    }

    /// The events of a file, and why reading stopped early (nil when the whole file was read).
    public static func read(_ bytes: [UInt8]) -> (events: [Event], problem: String?) {
        let scan = TFRecord.scan(bytes)
        var events: [Event] = []
        for (k, r) in scan.records.enumerated() {
            do { events.append(try Event(decoding: r)) } catch {
                return (events, "record \(k): not an event (\(error))")
            }
        }
        return (events, scan.problem)
    }

    /// What a rewind of a file leaves.
    public struct Rewound {
        /// The records kept, framed again: the file_version record and every event up to the step.
        public var bytes: [UInt8]
        /// Whole events dropped for their step.
        public var dropped: Int
        /// A torn or damaged tail that was cut off (and what was wrong with it).
        public var problem: String?
        /// Whether the file must be rewritten.
        public var changed: Bool { dropped > 0 || problem != nil }
    }

    /// `bytes` without the events of steps after `step` and without a torn tail. Records that are
    /// not events are kept as they are: they belong to no step.
    public static func rewound(_ bytes: [UInt8], throughStep step: Int64) -> Rewound {
        let scan = TFRecord.scan(bytes)
        var out = Rewound(bytes: [], dropped: 0, problem: scan.problem)
        for r in scan.records {
            if let e = try? Event(decoding: r), e.step > step {
                out.dropped += 1
            } else {
                out.bytes += TFRecord.frame(r)
            }
        }
        return out
    }
}
