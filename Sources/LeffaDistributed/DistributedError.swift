// Errors of the distributed layer that a caller can act on (a launch problem, a mismatch between
// ranks, a bad setting). Failures in the middle of a collective are not errors here: they abort
// the whole job (`MPIContext.abort`), because the other ranks could not recover from them anyway.

/// Something the trainer should report and stop on, with what was expected and how to recover.
public enum DistributedError: Error, CustomStringConvertible, Equatable {
    /// The MPI library cannot give the thread support the communication thread needs.
    case threadLevel(provided: Int32, required: Int32)
    /// `MPI_Init_thread` or another set-up call failed.
    case setup(call: String, message: String)
    /// Data that must be the same on every rank is not. `groups` lists the ranks sharing each
    /// version, largest group first; `detail` names what differs (e.g. parameter names).
    case mismatch(what: String, groups: [[Int]], detail: String)
    /// An environment variable or argument holds a value that cannot be used.
    case setting(name: String, value: String, expected: String)

    public var description: String {
        switch self {
        case let .threadLevel(provided, required):
            return "MPI provides thread level \(ThreadLevelName.of(provided)) but the gradient reducer needs "
                + "\(ThreadLevelName.of(required)) (its communication thread calls MPI); use an MPI build with "
                + "thread support (OpenMPI: configured with --enable-mpi-thread-multiple, the default since 3.0)"
        case let .setup(call, message):
            return "\(call) failed: \(message)"
        case let .mismatch(what, groups, detail):
            let list = groups.map { g in
                (g.count == 1 ? "rank " : "ranks ") + g.map(String.init).joined(separator: ", ")
            }
            return "\(what): not the same on every rank (grouped by version: " + list.joined(separator: " | ") + ")"
                + (detail.isEmpty ? "" : "; \(detail)")
                + ". Every rank must start from the same \(what): read it from the same file on every rank, or broadcast rank 0's copy"
        case let .setting(name, value, expected):
            return "\(name)=\"\(value)\": expected \(expected)"
        }
    }
}

enum ThreadLevelName {
    static func of(_ level: Int32) -> String {
        switch level {
        case 0: return "MPI_THREAD_SINGLE"
        case 1: return "MPI_THREAD_FUNNELED"
        case 2: return "MPI_THREAD_SERIALIZED"
        case 3: return "MPI_THREAD_MULTIPLE"
        default: return "level \(level)"
        }
    }
}
