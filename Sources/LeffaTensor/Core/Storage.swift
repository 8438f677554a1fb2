// Storage: a run of float32 numbers, 64-byte aligned, or a view into another storage.
// Views let parameters and gradients live in one flat block that MPI buckets and checkpoints
// slice directly. Not a tensor: no shape, no autograd.
import Foundation

public final class Storage: @unchecked Sendable {
    /// First element. Valid for `count` floats while this object lives.
    public let base: UnsafeMutablePointer<Float>
    public let count: Int
    /// Keeps the parent alive for a view; nil when this storage owns its memory.
    private let parent: Storage?
    /// Keeps borrowed memory alive (e.g. an MPI shared-memory window); nil otherwise.
    private let owner: AnyObject?
    /// Bytes mapped with mmap (`init(onDemand:)`), 0 for malloc'd memory.
    private let mappedBytes: Int

    /// Training allocates and frees the same large activation sizes every step. glibc would hand
    /// blocks over 128 KiB straight back to the kernel, so every step page-faults them in again;
    /// raising the mmap and trim thresholds keeps them in the heap for reuse.
    private static let allocatorTuned: Bool = {
        #if os(Linux)
        _ = glibcMallopt(-3 /* M_MMAP_THRESHOLD */, 32 << 20)
        _ = glibcMallopt(-1 /* M_TRIM_THRESHOLD */, 512 << 20)
        #endif
        return true
    }()

    /// Zero-filled (unless `zeroed` is false: for callers that overwrite every element, so a huge
    /// block's pages are first touched by the data itself), 64-byte aligned (AVX-512 line) memory.
    public init(count: Int, zeroed: Bool = true) {
        precondition(count >= 0, "Storage: negative element count \(count)")
        _ = Storage.allocatorTuned
        var raw: UnsafeMutableRawPointer? = nil
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let rc = posix_memalign(&raw, 64, bytes)
        guard rc == 0, let raw else { fatalError("Storage: cannot allocate \(bytes) bytes (posix_memalign \(rc))") }
        if zeroed { memset(raw, 0, bytes) }
        base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        parent = nil
        owner = nil
        mappedBytes = 0
        Storage.live.add(bytes)
    }

    /// Zero-filled memory whose pages the kernel supplies on first touch (an anonymous mmap), for
    /// the model-sized blocks: gradients and Adam moments of frozen parameters (a reference UNet
    /// that does not train, the VAE) are never written, so they never become resident. Not for
    /// activations: those are freed and allocated again every step, and should stay in the heap.
    public init(onDemand count: Int) {
        precondition(count >= 0, "Storage: negative element count \(count)")
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        guard let raw = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED
        else {
            fatalError("Storage: cannot map \(bytes) bytes (mmap: \(String(cString: strerror(errno))))")
        }
        base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        parent = nil
        owner = nil
        mappedBytes = bytes
        Storage.live.add(bytes)
    }

    /// `count` floats at `base` that someone else allocated and frees (an MPI shared-memory window):
    /// `owner` is kept alive as long as this storage and its views are.
    public init(borrowing base: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject) {
        self.base = base
        self.count = count
        parent = nil
        self.owner = owner
        mappedBytes = 0
    }

    /// A window `[offset, offset+count)` of `parent`; writes go to the parent's memory.
    public init(viewOf parent: Storage, offset: Int, count: Int) {
        precondition(
            offset >= 0 && count >= 0 && offset + count <= parent.count,
            "Storage view [\(offset), \(offset + count)) outside parent of \(parent.count)")
        base = parent.base + offset
        self.count = count
        self.parent = parent
        owner = nil
        mappedBytes = 0
    }

    deinit {
        if parent == nil && owner == nil {
            Storage.live.add(-max(count, 1) * MemoryLayout<Float>.stride)
            if mappedBytes > 0 { munmap(base, mappedBytes) } else { free(base) }
        }
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: base, count: count) }

    /// Bytes of tensor memory alive now and at most since the last reset: how tests bound the
    /// extra memory of an op without trusting the operating system's counters.
    public static let live = MemoryCounter()
}

#if os(Linux)
/// glibc's mallopt (declared in malloc.h, which the Glibc module does not export).
@_silgen_name("mallopt") private func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32
#endif

/// A thread-safe counter of bytes allocated by `Storage`, with a high-water mark.
public final class MemoryCounter: @unchecked Sendable {
    private var lock = NSLock()
    private var current = 0
    private var high = 0

    func add(_ bytes: Int) {
        lock.lock(); current += bytes; high = max(high, current); lock.unlock()
    }
    public var bytes: Int { lock.lock(); defer { lock.unlock() }; return current }
    public var peakBytes: Int { lock.lock(); defer { lock.unlock() }; return high }
    /// Start a new high-water mark at the current level.
    public func resetPeak() { lock.lock(); high = current; lock.unlock() }
}
