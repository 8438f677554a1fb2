// Splitting a text file into lines, for every reader of dataset lists (and the coordinator's
// hostfiles). Copies of the datasets are
// edited on Windows and old Macs, so a line may end in LF, CRLF or a lone CR, and the file may
// start with a UTF-8 byte-order mark; all of them read the same. In Swift "\r\n" is one Character,
// so `split(separator: "\n")` leaves a CRLF file as one line: this splits on UTF-8 bytes instead.

/// The lines of `text`, without their terminators: element i is line i + 1 as an editor numbers
/// it (CRLF is one line break). A leading byte-order mark (U+FEFF) is dropped. A terminator at the
/// very end does not start another line, so "a\nb\n" is ["a", "b"] while "a\n\n" is ["a", ""].
/// Splits as Python's universal newlines do: LF, CRLF and CR only.
public func textLines(_ text: String) -> [Substring] {
    let utf8 = text.utf8
    var start = utf8.startIndex
    if text.unicodeScalars.first == "\u{FEFF}" { start = text.unicodeScalars.index(after: start) }
    var lines: [Substring] = []
    var i = start
    while i < utf8.endIndex {
        let byte = utf8[i]
        guard byte == 0x0A || byte == 0x0D else { i = utf8.index(after: i); continue }
        // LF and CR are always Character boundaries (CR LF is one Character, cut before its CR).
        lines.append(text[start..<i])
        i = utf8.index(after: i)
        if byte == 0x0D && i < utf8.endIndex && utf8[i] == 0x0A { i = utf8.index(after: i) }
        start = i
    }
    if start < utf8.endIndex { lines.append(text[start..<utf8.endIndex]) }
    return lines
}
