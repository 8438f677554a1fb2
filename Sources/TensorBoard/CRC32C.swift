// CRC-32C (Castagnoli), the checksum of TFRecord framing, and its "masked" form. Table-driven, one
// byte at a time: event records are small and written once per step, so speed does not matter.

public enum CRC32C {
    /// The reflected polynomial 0x1EDC6F41.
    static let polynomial: UInt32 = 0x82F6_3B78

    static let table: [UInt32] = (0..<256).map { (n: Int) -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ polynomial : c >> 1 }
        return c
    }

    /// The CRC-32C of `bytes` (CRC32C("123456789") = 0xE3069283).
    public static func checksum<C: Sequence>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return ~crc
    }

    /// TFRecord stores checksums rotated and offset, so that a CRC of data that itself holds CRCs
    /// does not degenerate (TensorFlow's `crc32c::Mask`).
    public static func mask(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8 }

    /// The masked CRC-32C of `bytes`, as TFRecord stores it.
    public static func masked<C: Sequence>(_ bytes: C) -> UInt32 where C.Element == UInt8 { mask(checksum(bytes)) }
}
