// Where the shared golden fixtures live: ../shared/fixtures beside the package root (CI clones the
// repository with ../shared next to it).
import Foundation

public enum Fixtures {
    /// The package root, found from this file's path.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// ../shared/fixtures/leffa_tiny
    public static let leffaTiny: URL = packageRoot.deletingLastPathComponent()
        .appendingPathComponent("shared/fixtures/leffa_tiny")
}
