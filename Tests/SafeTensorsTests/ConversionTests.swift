// float16 / bfloat16 / float8 conversions: exact widening, round-to-nearest-even narrowing.
import XCTest
import LeffaTensor
@testable import SafeTensors

final class ConversionTests: XCTestCase {
    func testFloat16ToFloatKnownValues() {
        let cases: [(UInt16, Float)] = [
            (0x3C00, 1), (0xC000, -2), (0x7BFF, 65504), (0x3555, 0.333251953125),
            (0x0001, 0x1p-24), (0x8001, -0x1p-24), (0x03FF, 1023 * 0x1p-24), (0x0200, 0x1p-15),
            (0x0400, 0x1p-14), (0x7C00, .infinity), (0xFC00, -.infinity), (0x0000, 0),
        ]
        for (h, f) in cases { XCTAssertEqual(float16BitsToFloat(h).bitPattern, f.bitPattern, "0x\(String(h, radix: 16))") }
        XCTAssertEqual(float16BitsToFloat(0x8000).bitPattern, 0x8000_0000)               // -0 keeps its sign
        // NaNs keep sign, quiet bit and payload.
        XCTAssertEqual(float16BitsToFloat(0x7E00).bitPattern, 0x7FC0_0000)
        XCTAssertEqual(float16BitsToFloat(0xFD01).bitPattern, 0xFFA0_2000)
    }

    func testFloat16ExhaustiveRoundTrip() {
        // Every half survives half → float → half; NaNs come back quiet with their payload.
        for b in 0...0xFFFF {
            let h = UInt16(b), f = float16BitsToFloat(h)
            let isNaN = h & 0x7C00 == 0x7C00 && h & 0x3FF != 0
            XCTAssertEqual(f.isNaN, isNaN)
            XCTAssertEqual(floatToFloat16Bits(f), isNaN ? h | 0x0200 : h, "0x\(String(h, radix: 16))")
            #if !((os(macOS) || targetEnvironment(macCatalyst)) && arch(x86_64))
            if !isNaN { XCTAssertEqual(f.bitPattern, Float(Float16(bitPattern: h)).bitPattern) }
            #endif
        }
    }

    func testFloatToFloat16RoundsToNearestEven() {
        let cases: [(Float, UInt16)] = [
            (1, 0x3C00), (1 + 0x1p-11, 0x3C00), (1 + 3 * 0x1p-11, 0x3C02),            // ties go to even
            ((1 + 0x1p-11).nextUp, 0x3C01),
            (65504, 0x7BFF), (65519.996, 0x7BFF), (65520, 0x7C00), (1e9, 0x7C00), (.infinity, 0x7C00),
            (-65520, 0xFC00), (.greatestFiniteMagnitude, 0x7C00),
            (0x1p-24, 0x0001), (0x1p-25, 0x0000), (Float(0x1p-25).nextUp, 0x0001),    // tie at half the smallest subnormal → 0
            (3 * 0x1p-25, 0x0002), (5 * 0x1p-25, 0x0002), (7 * 0x1p-25, 0x0004),       // subnormal ties
            (0x1p-14 - 0x1p-25, 0x0400), (0x1p-14, 0x0400), (1023 * 0x1p-24, 0x03FF),  // across the normal boundary
            (1e-10, 0x0000), (-1e-10, 0x8000), (-0.0, 0x8000), (.leastNonzeroMagnitude, 0),
        ]
        for (f, h) in cases { XCTAssertEqual(floatToFloat16Bits(f), h, "\(f)") }
        XCTAssertEqual(floatToFloat16Bits(.nan) & 0x7E00, 0x7E00)
        XCTAssertEqual(floatToFloat16Bits(Float(bitPattern: 0x7F80_0001)) & 0x7E00, 0x7E00)  // a tiny payload stays NaN, not inf
        #if !((os(macOS) || targetEnvironment(macCatalyst)) && arch(x86_64))
        // Against the platform conversion on a deterministic spread of bit patterns.
        var mismatches = 0
        for i in 0..<400_000 {
            let f = Float(bitPattern: UInt32(truncatingIfNeeded: CounterRNG.bits(7, UInt64(i))))
            if f.isNaN { continue }
            if floatToFloat16Bits(f) != Float16(f).bitPattern { mismatches += 1 }
            let g = Float(bitPattern: 0x3300_0000 &+ UInt32(i) &* 61)                    // dense over the subnormal range and above
            if floatToFloat16Bits(g) != Float16(g).bitPattern { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0)
        #endif
    }

    func testBFloat16() {
        XCTAssertEqual(floatToBFloat16Bits(1), 0x3F80)
        XCTAssertEqual(floatToBFloat16Bits(Float(bitPattern: 0x3F80_8000)), 0x3F80)           // tie → even
        XCTAssertEqual(floatToBFloat16Bits(Float(bitPattern: 0x3F81_8000)), 0x3F82)           // tie → even
        XCTAssertEqual(floatToBFloat16Bits(Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertEqual(floatToBFloat16Bits(Float(bitPattern: 0x3F80_7FFF)), 0x3F80)
        XCTAssertEqual(floatToBFloat16Bits(.greatestFiniteMagnitude), 0x7F80)                 // overflow → inf
        XCTAssertEqual(floatToBFloat16Bits(-.infinity), 0xFF80)
        XCTAssertEqual(floatToBFloat16Bits(Float(bitPattern: 0x7F80_0001)), 0x7FC0)           // NaN stays NaN
        XCTAssertEqual(floatToBFloat16Bits(Float(bitPattern: 0x0000_8000)), 0x0000)           // subnormal tie → even
        XCTAssertEqual(floatToBFloat16Bits(Float(bitPattern: 0x0001_8000)), 0x0002)
        for b in 0...0xFFFF {
            let h = UInt16(b), f = bfloat16BitsToFloat(h)
            XCTAssertEqual(f.bitPattern, UInt32(h) << 16)
            XCTAssertEqual(floatToBFloat16Bits(f), f.isNaN ? h | 0x40 : h)
        }
    }

    func testFloat8() {
        XCTAssertEqual(float8E4M3BitsToFloat(0x38), 1)
        XCTAssertEqual(float8E4M3BitsToFloat(0x7E), 448)
        XCTAssertEqual(float8E4M3BitsToFloat(0x01), 0x1p-9)
        XCTAssertEqual(float8E4M3BitsToFloat(0xB8), -1)
        XCTAssertTrue(float8E4M3BitsToFloat(0x7F).isNaN)
        XCTAssertTrue(float8E4M3BitsToFloat(0xFF).isNaN)
        XCTAssertEqual(float8E5M2BitsToFloat(0x3C), 1)
        XCTAssertEqual(float8E5M2BitsToFloat(0x7B), 57344)
        XCTAssertEqual(float8E5M2BitsToFloat(0x7C), .infinity)
        XCTAssertEqual(float8E5M2BitsToFloat(0x01), 0x1p-16)
    }

    func testDTypeOrderMatchesReference() {
        // Descending order used by writers: U64, I64, F64, F32, U32, I32, BF16, F16, ...
        let desc = SafeTensorsDType.allCases.sorted(by: >).prefix(8).map(\.rawValue)
        XCTAssertEqual(desc, ["U64", "I64", "F64", "F32", "U32", "I32", "BF16", "F16"])
    }
}
