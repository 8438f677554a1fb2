// Each native library links and answers: a broken install or pkg-config entry fails here first.
import XCTest
import CBLAS
import CMPI
import CHDF5
import CPNG
import CJPEG

final class ShimTests: XCTestCase {
    func testOpenBLASComputes() {
        var a: [Float] = [1, 2, 3, 4], b: [Float] = [5, 6, 7, 8], c = [Float](repeating: 0, count: 4)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1, &a, 2, &b, 2, 0, &c, 2)
        XCTAssertEqual(c, [19, 22, 43, 50])
    }
    func testMPIHandlesImport() {
        var v: Int32 = 0, sub: Int32 = 0
        XCTAssertEqual(MPI_Get_version(&v, &sub), leffa_mpi_success())
        XCTAssertGreaterThanOrEqual(v, 3)
    }
    func testHDF5Version() {
        var maj: UInt32 = 0, min: UInt32 = 0, rel: UInt32 = 0
        XCTAssertGreaterThanOrEqual(H5get_libversion(&maj, &min, &rel), 0)
        XCTAssertEqual(maj, 1)
        XCTAssertGreaterThan(leffa_h5t_native_float(), 0)
    }
    func testPNGAndJPEGVersions() {
        XCTAssertTrue(String(cString: leffa_png_version()).hasPrefix("1.6"))
        XCTAssertGreaterThanOrEqual(leffa_jpeg_lib_version(), 62)
    }
}
