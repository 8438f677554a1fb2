// Element types of the safetensors format and the exact conversions between the 16-bit floats
// and float32. Not a general numeric library: only what reading and writing checkpoints needs.
//
// Conversions are written on bit patterns rather than through `Float16`, so that they are the
// same on every platform (Float16 is missing on macOS x86_64) and so that their rounding is
// visible here: float16/bfloat16 → float32 is exact for every input (subnormals, ±inf, NaN
// payloads), float32 → float16/bfloat16 rounds to nearest, ties to even, like PyTorch's `.half()`
// and `.bfloat16()`.

/// An element type as spelled in the header ("F32", "I64", …).
///
/// The cases are declared in the order of the reference implementation's `Dtype` enum (increasing
/// alignment). That order is part of the format in practice: writers sort tensors by descending
/// dtype, then by name, so a file written here is byte-identical to one written by the reference.
public enum SafeTensorsDType: String, CaseIterable, Sendable, Comparable {
    case bool = "BOOL"
    case u8 = "U8"
    case i8 = "I8"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .f64, .i64, .u64: return 8
        }
    }

    /// Whether `SafeTensorsFile.int64s(_:)` can return this type exactly as Int64.
    public var isInteger: Bool {
        switch self {
        case .bool, .u8, .i8, .i16, .u16, .i32, .u32, .i64, .u64: return true
        default: return false
        }
    }

    /// Position in the reference implementation's enum: the writer's sort key.
    var rank: Int { Self.allCases.firstIndex(of: self)! }

    public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }
}

// MARK: - float16

/// The float32 with the same value as the IEEE binary16 `h`. Exact for every input: normals and
/// subnormals are representable in float32, infinities keep their sign, and a NaN keeps its sign,
/// quiet bit and payload (shifted into the top of the float32 mantissa).
@inline(__always)
public func float16BitsToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = UInt32(h >> 10) & 0x1F
    var mant = UInt32(h) & 0x3FF
    if exp == 0x1F { // inf or NaN
        return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13))
    }
    if exp != 0 { // normal: rebias 15 → 127
        return Float(bitPattern: sign | ((exp + 112) << 23) | (mant << 13))
    }
    if mant == 0 { return Float(bitPattern: sign) } // ±0
    // Subnormal: mant × 2^-24. Shift the leading one up to bit 10 to make it a float32 normal.
    var e: UInt32 = 113 // biased float32 exponent of 2^-14
    while mant & 0x400 == 0 { mant <<= 1; e -= 1 }
    return Float(bitPattern: sign | (e << 23) | ((mant & 0x3FF) << 13))
}

/// The IEEE binary16 nearest to `f`, ties to even. Values at or above 65520 in magnitude become
/// ±inf, values at or below 2^-25 become ±0, a NaN stays a (quiet) NaN with the top of its payload.
@inline(__always)
public func floatToFloat16Bits(_ f: Float) -> UInt16 {
    let x = f.bitPattern
    let sign = UInt16(truncatingIfNeeded: (x >> 16) & 0x8000)
    let a = x & 0x7FFF_FFFF
    if a > 0x7F80_0000 { // NaN: force the quiet bit so it cannot become inf
        return sign | 0x7E00 | UInt16(truncatingIfNeeded: (a >> 13) & 0x3FF)
    }
    if a >= 0x477F_F000 { return sign | 0x7C00 } // ≥ 65520 (or inf): rounds to inf
    if a >= 0x3880_0000 { // ≥ 2^-14: a float16 normal
        var h = (a >> 13) &- (112 << 10) // rebias the exponent, keep 10 mantissa bits
        let rest = a & 0x1FFF
        if rest > 0x1000 || (rest == 0x1000 && h & 1 != 0) { h += 1 } // may carry into the exponent: still right
        return sign | UInt16(truncatingIfNeeded: h)
    }
    if a <= 0x3300_0000 { return sign } // ≤ 2^-25: the tie at 2^-25 goes to even (zero)
    // Subnormal result: value / 2^-24 rounded to an integer.
    let e = a >> 23 // 102 … 112
    let m = (a & 0x7F_FFFF) | 0x80_0000 // 24-bit significand, value = m × 2^(e-150)
    let shift = 126 - e // 14 … 24
    var h = m >> shift
    let rest = m & ((1 << shift) - 1), half = UInt32(1) << (shift - 1)
    if rest > half || (rest == half && h & 1 != 0) { h += 1 } // may become 0x400: the smallest normal
    return sign | UInt16(truncatingIfNeeded: h)
}

// MARK: - float8

/// The float32 value of an F8_E5M2 byte: the top half of a float16, so exact.
@inline(__always)
public func float8E5M2BitsToFloat(_ b: UInt8) -> Float { float16BitsToFloat(UInt16(b) << 8) }

/// The float32 value of an F8_E4M3 byte (the "fn" variant PyTorch stores: bias 7, no infinities,
/// S.1111.111 is NaN). Exact.
@inline(__always)
public func float8E4M3BitsToFloat(_ b: UInt8) -> Float {
    let exp = Int((b >> 3) & 0xF), mant = Float(b & 0x7)
    let magnitude: Float
    if exp == 0xF && b & 0x7 == 0x7 {
        magnitude = .nan
    } else if exp == 0 {
        magnitude = mant * 0x1p-9
    } // subnormal: mant/8 × 2^-6
    else {
        magnitude = (1 + mant / 8) * Float(sign: .plus, exponent: exp - 7, significand: 1)
    }
    return b & 0x80 != 0 ? -magnitude : magnitude
}

// MARK: - bfloat16

/// The float32 with the same value as the bfloat16 `b` (its top 16 bits): always exact.
@inline(__always)
public func bfloat16BitsToFloat(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

/// The bfloat16 nearest to `f`, ties to even (overflow rounds to ±inf); a NaN stays a quiet NaN.
@inline(__always)
public func floatToBFloat16Bits(_ f: Float) -> UInt16 {
    let x = f.bitPattern
    if x & 0x7FFF_FFFF > 0x7F80_0000 { return UInt16(truncatingIfNeeded: x >> 16) | 0x0040 }
    let rounded = x &+ 0x7FFF &+ ((x >> 16) & 1)
    return UInt16(truncatingIfNeeded: rounded >> 16)
}
