import XCTest
import SafeTensors
final class SafeTensorsPlaceholderTests: XCTestCase { func testModuleLinks() { XCTAssertTrue(true) } }
