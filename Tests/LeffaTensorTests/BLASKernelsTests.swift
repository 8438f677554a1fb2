// OpenBLAS's kernel choice is mended only when it fell back to generic kernels on a CPU that can
// do better, and never against the user's own OPENBLAS_CORETYPE.
import CBLAS
import LeffaTensor
import XCTest

final class BLASKernelsTests: XCTestCase {
    func testAFallbackIsReplacedByWhatTheCPUCanDo() {
        XCTAssertEqual(BLASKernels.betterCore(current: "Prescott", vectorLevel: 2, environment: [:]), "SkylakeX")
        XCTAssertEqual(BLASKernels.betterCore(current: "Prescott", vectorLevel: 1, environment: [:]), "Haswell")
        XCTAssertEqual(BLASKernels.betterCore(current: "Nehalem", vectorLevel: 1, environment: [:]), "Haswell")
        XCTAssertNil(BLASKernels.betterCore(current: "Prescott", vectorLevel: 0, environment: [:]))
    }

    func testARecognisedCPUOrTheUsersChoiceStands() {
        for core in ["Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"] {
            XCTAssertNil(BLASKernels.betterCore(current: core, vectorLevel: 2, environment: [:]), core)
        }
        XCTAssertNil(BLASKernels.betterCore(current: "Prescott", vectorLevel: 2, environment: ["OPENBLAS_CORETYPE": "Prescott"]))
    }

    /// The CPU probe agrees with /proc/cpuinfo's flags on Linux.
    func testTheVectorLevelMatchesTheKernelsFlags() throws {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else {
            throw XCTSkip("no /proc/cpuinfo")
        }
        let flags = Set(line.split(separator: " ").map(String.init))
        let expected = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains) ? 2
            : ["avx2", "fma"].allSatisfy(flags.contains) ? 1 : 0
        XCTAssertEqual(Int(leffa_cpu_vector_level()), expected)
    }
}
