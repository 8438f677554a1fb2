// Decoding and encoding PNG and JPEG files through the CPNG and CJPEG shims. The format is taken
// from the file's bytes, not its name; errors say which file, and whether it is missing,
// unreadable, corrupt or unsupported. Decoding gives what Pillow gives (the published training
// code reads its data with Pillow), through the setjmp-guarded C functions in the shims; PNG
// encoding uses libpng's simplified API.
// Not a dataset reader: nothing here knows about samples or pairs.

import Foundation
import CPNG
import CJPEG
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum ImageFormat: String, Sendable {
    case png, jpeg

    /// From the first bytes: PNG signature or JPEG SOI marker; nil for anything else.
    public static func sniff<C: Collection>(_ bytes: C) -> ImageFormat? where C.Element == UInt8 {
        let head = Array(bytes.prefix(8))
        if head.count >= 8 && head == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        if head.count >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF { return .jpeg }
        return nil
    }

    /// From a file name's extension (.png, .jpg, .jpeg; any case); nil otherwise.
    public static func fromExtension(_ url: URL) -> ImageFormat? {
        switch url.pathExtension.lowercased() {
        case "png": return .png
        case "jpg", "jpeg": return .jpeg
        default: return nil
        }
    }
}

/// What a header says about an image, and what a full decode found wrong but repaired.
public struct ImageInfo: Equatable, Sendable {
    public var format: ImageFormat
    public var size: Size
    /// Channels stored in the file after dropping alpha: 1 for gray, 3 for colour (palette PNGs and
    /// CMYK JPEGs included).
    public var channels: Int
    /// libjpeg's first warning about repaired corrupt data (nil when clean or not decoded).
    public var warning: String?
}

public enum ImageIO {
    // MARK: Files

    /// The whole file. Missing → `.missing`, anything else that stops reading → `.unreadable`.
    public static func readBytes(_ url: URL) throws -> [UInt8] {
        let path = url.path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            throw DataError(
                e == ENOENT || e == ENOTDIR ? .missing : .unreadable, path: path,
                reason: e == ENOENT || e == ENOTDIR ? "no such file" : "cannot open: \(String(cString: strerror(e)))")
        }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 {
            throw DataError(.unreadable, path: path, reason: "cannot stat: \(String(cString: strerror(errno)))")
        }
        if (st.st_mode & S_IFMT) != S_IFREG { throw DataError(.unreadable, path: path, reason: "not a regular file") }
        let size = Int(st.st_size)
        var bytes = [UInt8](repeating: 0, count: size)
        var got = 0
        try bytes.withUnsafeMutableBytes { buf in
            while got < size {
                let r = posixRead(fd, buf.baseAddress! + got, size - got)
                if r < 0 {
                    if errno == EINTR { continue };
                    throw DataError(.unreadable, path: path, reason: "read failed: \(String(cString: strerror(errno)))")
                }
                if r == 0 { break }
                got += r
            }
        }
        if got < size { bytes.removeLast(size - got) }
        return bytes
    }

    /// Writes `bytes` to a temporary file beside `url` and renames it over `url`, so a reader
    /// never sees half an image. Creates missing parent directories.
    public static func writeBytes(_ bytes: [UInt8], to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let tmp = dir.appendingPathComponent(
            ".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        ).path
        guard let f = fopen(tmp, "wb") else {
            throw DataError(
                .unreadable, path: url.path, reason: "cannot create '\(tmp)': \(String(cString: strerror(errno)))")
        }
        let ok = bytes.isEmpty || fwrite(bytes, 1, bytes.count, f) == bytes.count
        let closed = fclose(f) == 0
        if !ok || !closed {
            unlink(tmp)
            throw DataError(
                .unreadable, path: url.path, reason: "cannot write '\(tmp)': \(String(cString: strerror(errno)))")
        }
        if rename(tmp, url.path) != 0 {
            let e = errno
            unlink(tmp)
            throw DataError(
                .unreadable, path: url.path, reason: "cannot rename into place: \(String(cString: strerror(e)))")
        }
    }

    // MARK: Decoding

    /// Decodes the file at `url` (PNG or JPEG, whatever its extension says) to what Pillow's
    /// `Image.open(f).convert("RGB")` (channels 3) or `.convert("L")` (channels 1) gives, the
    /// published training code's reader; channels 0 → as stored (1 for gray files, else 3).
    /// Every PNG colour type and bit depth, and gray, YCbCr, RGB, CMYK and YCCK JPEGs. As in
    /// Pillow: alpha and tRNS are dropped (not composited), 16-bit samples keep their high byte,
    /// gamma chunks are ignored, CMYK becomes RGB by Pillow's formula (details in the shims).
    public static func read(_ url: URL, channels: Int = 3) throws -> Image {
        try decode(readBytes(url), channels: channels, path: url.path)
    }

    /// Decodes bytes; `path` only names the source in errors.
    public static func decode(_ bytes: [UInt8], channels: Int = 3, path: String = "<memory>") throws -> Image {
        precondition(
            channels == 0 || channels == 1 || channels == 3,
            "ImageIO.decode: channels must be 0, 1 or 3, got \(channels)")
        let stored: Image
        switch try format(bytes, path: path) {
        case .png: stored = try readPNG(bytes, labels: false, headerOnly: false, path: path).image!
        case .jpeg: stored = try decodeJPEG(bytes, headerOnly: false, path: path).image!
        }
        return channels == 0 ? stored : stored.converted(toChannels: channels)
    }

    /// Format, size and channels from the header alone, or — `decode: true` — after a full
    /// decode, which is what finds truncated and corrupt files (and JPEG data libjpeg repaired).
    public static func inspect(_ url: URL, decode full: Bool = false) throws -> ImageInfo {
        let bytes = try readBytes(url)
        let path = url.path
        switch try format(bytes, path: path) {
        case .png:
            let r = try readPNG(bytes, labels: false, headerOnly: !full, path: path)
            // A header-only look still catches a truncated file: every PNG ends with IEND.
            if !full && !endsWith(bytes, [0x49, 0x45, 0x4E, 0x44]) {
                throw DataError(
                    .corrupt, path: path, reason: "PNG is truncated: \(bytes.count) bytes and no IEND chunk at the end")
            }
            return ImageInfo(format: .png, size: r.size, channels: r.channels, warning: nil)
        case .jpeg:
            let r = try decodeJPEG(bytes, headerOnly: !full, path: path)
            // libjpeg decodes a truncated JPEG with a warning (grey rows), so this is one too.
            let cut =
                !full && !endsWith(bytes, [0xFF, 0xD9])
                ? "JPEG ends without its end-of-image marker (truncated?)" : nil
            return ImageInfo(format: .jpeg, size: r.size, channels: r.channels, warning: r.warning ?? cut)
        }
    }

    /// Whether `marker` occurs in the last 1 KB of `bytes` (files may carry padding after it).
    static func endsWith(_ bytes: [UInt8], _ marker: [UInt8]) -> Bool {
        let tail = bytes.suffix(1024)
        guard tail.count >= marker.count else { return false }
        var i = tail.endIndex - marker.count
        while i >= tail.startIndex {
            if tail[i..<(i + marker.count)].elementsEqual(marker) { return true }
            i -= 1
        }
        return false
    }

    /// The stored values of a palette or grayscale PNG, one per pixel (palette indices, not
    /// colours): what human-parsing label maps hold. JPEG and RGB PNGs are `.unsupported`.
    public static func readLabels(_ url: URL) throws -> Image {
        let bytes = try readBytes(url)
        let path = url.path
        guard try format(bytes, path: path) == .png else {
            throw DataError(
                .unsupported, path: path,
                reason:
                    "label map is a JPEG; expected a palette or grayscale PNG (JPEG compression changes label values)")
        }
        return try readPNG(bytes, labels: true, headerOnly: false, path: path).image!
    }

    private static func format(_ bytes: [UInt8], path: String) throws -> ImageFormat {
        if bytes.isEmpty { throw DataError(.corrupt, path: path, reason: "empty file (0 bytes)") }
        guard let f = ImageFormat.sniff(bytes) else {
            let head = bytes.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw DataError(.unsupported, path: path, reason: "not a PNG or JPEG file (starts with \(head))")
        }
        return f
    }

    private static func pngError(_ img: UnsafeMutablePointer<png_image>, path: String) -> DataError {
        let msg = withUnsafeBytes(of: img.pointee.message) { raw in
            String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
        }
        return DataError(.corrupt, path: path, reason: "PNG: \(msg.isEmpty ? "decoding failed" : msg)")
    }

    /// A PNG through the CPNG shim's full-API reader: a picture in the file's own channels (1 or
    /// 3), or with `labels` the stored values of a palette or gray label map. `image` is nil when
    /// `headerOnly`. An RGB label map is `.unsupported`; anything libpng refuses is `.corrupt`.
    private static func readPNG(_ bytes: [UInt8], labels: Bool, headerOnly: Bool, path: String) throws
        -> (image: Image?, size: Size, channels: Int)
    {
        var out: UnsafeMutablePointer<UInt8>? = nil
        var h: Int32 = 0, w: Int32 = 0, c: Int32 = 0
        var err = [CChar](repeating: 0, count: 256)
        let mode = Int32(labels ? LEFFA_PNG_LABELS : LEFFA_PNG_PICTURE)
        let rc = bytes.withUnsafeBufferPointer { b in
            leffa_png_read(b.baseAddress, b.count, mode, headerOnly ? 1 : 0, &out, &h, &w, &c, &err)
        }
        if rc != 0 {
            let msg = String(cString: err)
            throw DataError(
                msg.contains("RGB image") ? .unsupported : .corrupt, path: path,
                reason: "PNG: \(msg.isEmpty ? "decoding failed" : msg)")
        }
        let size = Size(height: Int(h), width: Int(w))
        guard let out else { return (nil, size, Int(c)) }
        defer { free(out) }
        let pixels = Array(UnsafeBufferPointer(start: out, count: Int(h) * Int(w) * Int(c)))
        return (Image(height: Int(h), width: Int(w), channels: Int(c), pixels: pixels), size, Int(c))
    }

    /// A JPEG through the CJPEG shim in the file's own channels (1 for gray, 3 for YCbCr, RGB,
    /// CMYK and YCCK); `image` is nil when `headerOnly`.
    private static func decodeJPEG(_ bytes: [UInt8], headerOnly: Bool, path: String) throws
        -> (image: Image?, size: Size, channels: Int, warning: String?)
    {
        var out: UnsafeMutablePointer<UInt8>? = nil
        var h: Int32 = 0, w: Int32 = 0, c: Int32 = 0, warnings: Int32 = 0
        var warn = [CChar](repeating: 0, count: 256), err = [CChar](repeating: 0, count: 256)
        let rc = bytes.withUnsafeBufferPointer { b in
            leffa_jpeg_decode(
                b.baseAddress, b.count, headerOnly ? 1 : 0,
                &out, &h, &w, &c, &warnings, &warn, &err, 256)
        }
        if rc != 0 {
            let msg = String(cString: err)
            let unsupported = msg.lowercased().contains("unsupported")
            throw DataError(unsupported ? .unsupported : .corrupt, path: path, reason: "JPEG: \(msg)")
        }
        let size = Size(height: Int(h), width: Int(w))
        let warning = warnings > 0 ? "JPEG: \(String(cString: warn))" : nil
        guard let out else { return (nil, size, Int(c), warning) }
        defer { free(out) }
        let image = Image(
            height: Int(h), width: Int(w), channels: Int(c),
            pixels: Array(UnsafeBufferPointer(start: out, count: Int(h) * Int(w) * Int(c))))
        return (image, size, Int(c), warning)
    }

    // MARK: Encoding

    /// A PNG of the image (8-bit gray or RGB, lossless).
    public static func encodePNG(_ image: Image) throws -> [UInt8] {
        try writePNG(
            width: image.width, height: image.height,
            format: image.channels == 3 ? leffa_png_format_rgb() : leffa_png_format_gray(),
            pixels: image.pixels, stride: image.width * image.channels, colormap: nil)
    }

    /// A palette PNG: `indices` (one channel) index `palette` (RGB triples, at most 256). This is
    /// how VITON-HD stores its parsing maps; `readLabels` returns the indices unchanged.
    public static func encodePalettePNG(indices: Image, palette: [(UInt8, UInt8, UInt8)]) throws -> [UInt8] {
        precondition(indices.channels == 1, "encodePalettePNG: indices must have one channel, got \(indices.channels)")
        precondition(
            !palette.isEmpty && palette.count <= 256,
            "encodePalettePNG: palette needs 1…256 colours, got \(palette.count)")
        if let m = indices.pixels.max(), Int(m) >= palette.count {
            preconditionFailure("encodePalettePNG: index \(m) outside a palette of \(palette.count)")
        }
        return try writePNG(
            width: indices.width, height: indices.height, format: leffa_png_format_rgb_colormap(),
            pixels: indices.pixels, stride: indices.width, colormap: palette.flatMap { [$0.0, $0.1, $0.2] })
    }

    /// Sizes, then writes, the PNG in memory. Each call gets a fresh heap png_image: libpng keeps
    /// pointers to it (its error handler writes the message into it), so it is never copied.
    private static func writePNG(
        width: Int, height: Int, format: UInt32, pixels: [UInt8], stride: Int, colormap: [UInt8]?
    ) throws -> [UInt8] {
        func attempt(_ out: UnsafeMutableRawPointer?, _ size: inout Int) throws -> Bool {
            let img = UnsafeMutablePointer<png_image>.allocate(capacity: 1)
            img.initialize(to: png_image())
            defer { png_image_free(img); img.deallocate() }
            img.pointee.version = leffa_png_image_version()
            img.pointee.width = UInt32(width); img.pointee.height = UInt32(height)
            img.pointee.format = format
            img.pointee.colormap_entries = UInt32((colormap?.count ?? 0) / 3)
            let ok = pixels.withUnsafeBytes { p in
                (colormap ?? []).withUnsafeBytes { m in
                    png_image_write_to_memory(
                        img, out, &size, 0, p.baseAddress, Int32(stride), colormap == nil ? nil : m.baseAddress)
                }
            }
            if ok == 0 && (out != nil || size == 0) { throw pngError(img, path: "<PNG encoder>") }
            return ok != 0
        }
        var size = 0
        _ = try attempt(nil, &size)
        var out = [UInt8](repeating: 0, count: size)
        var written = size
        _ = try out.withUnsafeMutableBytes { try attempt($0.baseAddress, &written) }
        out.removeLast(out.count - written)
        return out
    }

    /// A baseline JPEG at `quality` (1…100; 4:2:0 chroma for RGB).
    public static func encodeJPEG(_ image: Image, quality: Int = 95) throws -> [UInt8] {
        precondition((1...100).contains(quality), "encodeJPEG: quality must be 1…100, got \(quality)")
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        var err = [CChar](repeating: 0, count: 256)
        let rc = image.pixels.withUnsafeBufferPointer { p in
            leffa_jpeg_encode(
                p.baseAddress, Int32(image.height), Int32(image.width), Int32(image.channels),
                Int32(quality), &out, &size, &err, 256)
        }
        if rc != 0 { throw DataError(.unsupported, path: "<JPEG encoder>", reason: "JPEG: \(String(cString: err))") }
        defer { free(out) }
        return Array(UnsafeBufferPointer(start: out, count: Int(size)))
    }

    /// Encodes in `format` (default: from the extension — .png or .jpg/.jpeg) and writes atomically.
    public static func write(_ image: Image, to url: URL, format: ImageFormat? = nil, quality: Int = 95) throws {
        guard let f = format ?? ImageFormat.fromExtension(url) else {
            throw DataError(
                .unsupported, path: url.path,
                reason: "cannot tell the image format from extension '.\(url.pathExtension)'",
                hint: "use .png, .jpg or .jpeg, or pass format:")
        }
        let bytes: [UInt8]
        do {
            bytes = f == .png ? try encodePNG(image) : try encodeJPEG(image, quality: quality)
        } catch var e as DataError {
            e.path = url.path
            throw e
        }
        try writeBytes(bytes, to: url)
    }
}

/// read(2), named apart from `ImageIO.read`.
private func posixRead(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.read(fd, p, n)
    #else
    return Darwin.read(fd, p, n)
    #endif
}
