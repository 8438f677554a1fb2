// `check()`: every problem of a dataset before training starts, not just the first. The pairs
// files were parsed when the dataset was opened (malformed lines with their numbers); here every
// sample's recipe is resolved and each file it names is looked at once: missing, unreadable,
// corrupt or unsupported files, person-aligned files whose size differs from the person image,
// JPEG data libjpeg had to repair, and — when asked — sizes or aspect ratios that differ from
// what the stage expects. Files are inspected in parallel; problems come out in index order
// whatever the thread count.

import Foundation
import LeffaTensor
import SafeTensors

public struct CheckOptions: Sendable {
    /// Decode every image fully (finds truncated and corrupt data); false reads headers only,
    /// which is much faster but only finds missing files, wrong formats and wrong sizes.
    public var decodeImages: Bool
    /// The size the dataset is supposed to have (e.g. 1024×768): other sizes are warnings.
    public var expectedSize: Size?
    /// The stage resolution: person and reference images whose aspect ratio differs by more
    /// than `aspectTolerance` are warnings that say what `policy` will do to them.
    public var targetSize: Size?
    public var aspectTolerance: Double
    public var policy: AspectPolicy

    public init(
        decodeImages: Bool = true, expectedSize: Size? = nil, targetSize: Size? = nil,
        aspectTolerance: Double = 0.01, policy: AspectPolicy = .centerCrop
    ) {
        self.decodeImages = decodeImages; self.expectedSize = expectedSize; self.targetSize = targetSize
        self.aspectTolerance = aspectTolerance; self.policy = policy
    }
}

/// How a file is read, which decides how it is inspected.
enum FileRole: Equatable {
    case picture, labels, flow
    /// A densepose image read as IUV: its part indices are checked when decoding.
    case iuv
}

struct FileUse {
    var field: String
    var url: URL
    var role: FileRole
    /// Must have the person image's size.
    var personAligned: Bool
}

extension SampleRecipe {
    /// Every file this recipe reads, person image first.
    var fileUses: [FileUse] {
        var uses = [
            FileUse(field: SampleField.image, url: image, role: .picture, personAligned: true),
            FileUse(field: SampleField.reference, url: reference, role: .picture, personAligned: false)
        ]
        func add(_ m: MaskSource, _ field: String) {
            switch m {
            case .file(let u): uses.append(FileUse(field: field, url: u, role: .picture, personAligned: true))
            case .labels(let u, _, _, _): uses.append(FileUse(field: field, url: u, role: .labels, personAligned: true))
            case .denseposeForeground, .everywhere: break
            }
        }
        if case .image(let u) = densepose {
            uses.append(
                FileUse(
                    field: SampleField.densepose, url: u, role: denseposeEncoding == .iuv ? .iuv : .picture,
                    personAligned: true))
        }
        add(inpaintMask, SampleField.inpaintMask)
        add(lossMask, SampleField.lossMask)
        if let f = flow { uses.append(FileUse(field: SampleField.flow, url: f, role: .flow, personAligned: true)) }
        // The same file for two fields (both masks from one label map) is looked at once.
        var seen = Set<URL>()
        return uses.filter { seen.insert($0.url).inserted }
    }
}

/// What inspecting one file found.
enum Inspection {
    case missing
    case failed(DataError)
    case ok(Size, warning: String?)
}

func inspect(_ url: URL, role: FileRole, decode: Bool) -> Inspection {
    var st = stat()
    if stat(url.path, &st) != 0 {
        let e = errno
        var link = stat()
        // A name that is there but leads nowhere is not "missing": say what it is.
        if lstat(url.path, &link) == 0 && (link.st_mode & S_IFMT) == S_IFLNK {
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: url.path)) ?? "?"
            let why =
                e == ELOOP
                ? "a symbolic link loop (it leads back to itself through '\(target)')"
                : "a symbolic link to '\(target)', which does not exist"
            return .failed(DataError(.unreadable, path: url.path, reason: why))
        }
        if e == ENOENT || e == ENOTDIR { return .missing }
        return .failed(DataError(.unreadable, path: url.path, reason: "cannot open: \(String(cString: strerror(e)))"))
    }
    do {
        switch role {
        case .picture:
            let info = try ImageIO.inspect(url, decode: decode)
            return .ok(info.size, warning: info.warning)
        case .iuv:
            guard decode else { return .ok(try ImageIO.inspect(url, decode: false).size, warning: nil) }
            let img = try ImageIO.read(url, channels: 3)
            try validateIUV(img, path: url.path)
            return .ok(img.size, warning: nil)
        case .labels:
            if decode { return .ok(try ImageIO.readLabels(url).size, warning: nil) }
            let info = try ImageIO.inspect(url, decode: false)
            if info.format != .png {
                return .failed(
                    DataError(
                        .unsupported, path: url.path, reason: "label map is a JPEG; expected a palette or grayscale PNG"
                    ))
            }
            return .ok(info.size, warning: nil)
        case .flow:
            let f = try SafeTensorsFile(url: url)
            let s = try f.shape(of: "flow"), v = try f.shape(of: "valid")
            guard s.count == 3, s[2] == 2, v == Array(s.prefix(2)) else {
                return .failed(
                    DataError(
                        .corrupt, path: url.path,
                        reason: "\"flow\" has shape \(s) and \"valid\" \(v); expected (H, W, 2) and (H, W)"))
            }
            return .ok(Size(height: s[0], width: s[1]), warning: nil)
        }
    } catch let e as DataError {
        return .failed(e)
    } catch {
        return .failed(DataError(.corrupt, path: url.path, reason: "\(error)"))
    }
}

/// The problems of `recipes` (see the file header). Sample-level problems carry `pairIndex`.
func checkRecipes(_ recipes: [SampleRecipe], options: CheckOptions) -> [DataProblem] {
    // Unique files in first-use order.
    var order: [(URL, FileRole)] = [], slot: [URL: Int] = [:]
    let uses = recipes.map(\.fileUses)
    for us in uses { for u in us where slot[u.url] == nil { slot[u.url] = order.count; order.append((u.url, u.role)) } }

    let results = UnsafeMutablePointer<Inspection>.allocate(capacity: max(order.count, 1))
    results.initialize(repeating: .missing, count: max(order.count, 1))
    defer { results.deinitialize(count: max(order.count, 1)); results.deallocate() }
    let files = order
    Parallel.for(files.count, grain: 1) { range in
        for i in range { results[i] = inspect(files[i].0, role: files[i].1, decode: options.decodeImages) }
    }

    var problems: [DataProblem] = []
    var reported = Set<URL>() // per-file problems are reported once, at the first sample using the file
    for (r, us) in zip(recipes, uses) {
        // The person-aligned files must share one size. When the person image alone differs from
        // two or more files that agree, the person image is the odd one out: blame it, not them.
        var personSize: Size? = nil
        var aligned: [(FileUse, Size)] = []
        for u in us where u.personAligned {
            if case .ok(let size, _) = results[slot[u.url]!] { aligned.append((u, size)) }
        }
        if let person = aligned.first(where: { $0.0.field == SampleField.image }) {
            let others = aligned.filter { $0.0.field != SampleField.image }
            let agreed = others.first.map { o in others.allSatisfy { $0.1 == o.1 } ? o.1 : nil } ?? nil
            if let agreed, others.count >= 2, agreed != person.1 {
                var e = DataError(
                    .wrongSize, path: person.0.url.path, field: SampleField.image, line: r.line,
                    pairsFile: r.pairsFile, reason: "")
                e.reason =
                    "is \(person.1), but its \(others.count) person-aligned files (\(others.map(\.0.field).joined(separator: ", "))) are all \(agreed)"
                problems.append(DataProblem(.error, e, pairIndex: r.index))
                personSize = nil
            } else {
                personSize = person.1
            }
        }
        for u in us {
            let at = DataError(
                .missing, path: u.url.path, field: u.field, line: r.line, pairsFile: r.pairsFile, reason: "")
            switch results[slot[u.url]!] {
            case .missing:
                let e = DataError(.missing, path: u.url.path, reason: "no such file").attributed(
                    field: u.field, line: r.line, pairsFile: r.pairsFile)
                problems.append(DataProblem(.error, e, pairIndex: r.index))
            case .failed(let err):
                if reported.insert(u.url).inserted {
                    problems.append(
                        DataProblem(
                            .error, err.attributed(field: u.field, line: r.line, pairsFile: r.pairsFile),
                            pairIndex: r.index))
                }
            case .ok(let size, let warning):
                if u.personAligned, u.field != SampleField.image, let p = personSize, p != size {
                    var e = at
                    e.kind = .wrongSize
                    e.reason = "is \(size), expected \(p) like the person image '\(r.image.lastPathComponent)'"
                    problems.append(DataProblem(.error, e, pairIndex: r.index))
                }
                guard reported.insert(u.url).inserted else { continue }
                if let warning {
                    var e = at
                    e.kind = .corrupt
                    e.reason = "\(warning) (libjpeg repaired it; the pixels may be damaged)"
                    problems.append(DataProblem(.warning, e, pairIndex: r.index))
                }
                if let want = options.expectedSize, u.role != .flow, size != want {
                    var e = at
                    e.kind = .wrongSize
                    e.reason = "is \(size), the dataset is expected to be \(want)"
                    problems.append(DataProblem(.warning, e, pairIndex: r.index))
                }
                if let target = options.targetSize, u.field == SampleField.image || u.field == SampleField.reference {
                    let plan = ResizePlan(
                        from: size, to: target, policy: options.policy, aspectTolerance: options.aspectTolerance)
                    if !plan.isPlainResize {
                        var e = at
                        e.kind = .wrongSize
                        let a = String(format: "%.4f", size.aspect), b = String(format: "%.4f", target.aspect)
                        let tol = String(format: "%.1f", options.aspectTolerance * 100)
                        e.reason =
                            "aspect ratio W/H \(a) of \(size) (H×W) differs from the stage's \(b) of \(target) by more than \(tol)%; "
                            + "\(options.policy.rawValue) will be applied: \(plan)"
                        problems.append(DataProblem(.warning, e, pairIndex: r.index))
                    }
                }
            }
        }
    }
    return problems
}
