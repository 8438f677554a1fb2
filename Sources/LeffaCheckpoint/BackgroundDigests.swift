// XXH64 digests taken on a second thread while the caller moves the bytes: the reader hashes each
// run of datasets while it reads the next, the writer hashes ahead of its writes. At SD1.5 size
// that is 29 GB of hashing, a tenth to a quarter of a save or load when done in line.
import Dispatch

/// Digest slots 0..<count, filled by `hash(_:)` jobs that run in submission order on one
/// background thread. The hashed memory must stay alive and unchanged until `finish()` returns.
final class BackgroundDigests: @unchecked Sendable {
    /// Written by the hashing thread, read after the slot's semaphore: raw memory, so the two
    /// threads never touch one Swift array at the same time.
    private let values: UnsafeMutablePointer<UInt64>
    private let done: [DispatchSemaphore]
    private let queue = DispatchQueue(label: "leffa.checkpoint.digests")

    init(count: Int) {
        values = .allocate(capacity: max(1, count))
        done = (0..<count).map { _ in DispatchSemaphore(value: 0) }
    }

    /// Hashes each region into its slot, in order, on the background thread.
    func hash(_ regions: [(slot: Int, bytes: UnsafeRawBufferPointer)]) {
        let jobs = regions.map { Region(slot: $0.slot, bytes: $0.bytes) }
        queue.async { [self] in
            for j in jobs {
                values[j.slot] = XXHash64.hash(j.bytes)
                done[j.slot].signal()
            }
        }
    }

    /// The digest of `slot`, once its job has run (a slot never submitted waits for ever).
    func wait(_ slot: Int) -> UInt64 {
        done[slot].wait()
        done[slot].signal() // a later wait on the same slot returns at once
        return values[slot]
    }

    /// Waits for every job submitted so far.
    func finish() { queue.sync {} }

    deinit {
        finish()
        values.deallocate()
    }

    private struct Region: @unchecked Sendable { var slot: Int, bytes: UnsafeRawBufferPointer }
}
