// A child process in its own process group with its output appended to a file: what the
// supervisor needs to stop mpirun and all its ranks at once (kill(-pgid)) and to poll without
// threads. posix_spawn directly, because Foundation's Process cannot set the process group.
import Foundation
import LeffaRunFormat
#if canImport(Glibc)
import Glibc
#endif

final class ChildProcess {
    let pid: pid_t
    private var finished: (code: Int32, signal: Int32?)? = nil

    /// Starts `argv` (argv[0] is looked up on PATH) with stdout and stderr appended to `output`.
    init(_ argv: [String], environment: [String: String], output: URL) throws {
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 1, output.path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&fa, 1, 2)
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // Own process group (Ctrl-C at the terminal reaches only us); default signal handling.
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attr, 0)
        var defaults = sigset_t(), empty = sigset_t()
        sigemptyset(&defaults); sigemptyset(&empty)
        for s in [SIGINT, SIGTERM, SIGPIPE, SIGHUP] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setsigmask(&attr, &empty)

        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in cArgs + cEnv { free(p) } }
        var p: pid_t = 0
        let rc = posix_spawnp(&p, argv[0], &fa, &attr, cArgs, cEnv)
        guard rc == 0 else {
            throw RunError(
                "cannot start \(argv[0]): \(String(cString: strerror(rc))); check the path (or that mpirun is on PATH)")
        }
        pid = p
    }

    /// The exit status once the child has ended (reaps it), else nil.
    func poll() -> (code: Int32, signal: Int32?)? {
        if let finished { return finished }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        guard r == pid else { return nil }
        // WIFEXITED / WTERMSIG are macros; decode the wait status by hand.
        let sig = status & 0x7f
        finished = sig == 0 ? ((status >> 8) & 0xff, nil) : (128 + sig, sig)
        return finished
    }

    /// Waits up to `timeout` seconds for the child to end.
    func wait(timeout: Double) -> (code: Int32, signal: Int32?)? {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if let s = poll() { return s }
            usleep(50_000)
        }
        return poll()
    }

    /// Sends `sig` to the child's whole process group (mpirun and the ranks it started locally).
    func signalGroup(_ sig: Int32) { kill(-pid, sig) }
}
