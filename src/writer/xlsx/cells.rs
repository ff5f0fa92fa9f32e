//! Sheet rows as SpreadsheetML, appended to a byte buffer with no allocation
//! per cell: column letters are computed once per sheet, numbers go through
//! itoa, `schema::write_short_decimal` and zmij, and text is escaped in place.

use crate::schema;

/// Appends the column letters of `col` (0 is `A`, 26 is `AA`).
pub fn column_letters(col: usize, out: &mut Vec<u8>) {
    let start = out.len();
    let mut n = col + 1;
    while n > 0 {
        let rem = (n - 1) % 26;
        out.push(b'A' + rem as u8);
        n = (n - 1) / 26;
    }
    out[start..].reverse();
}

/// `A1:C9` for the given last column and 1-based last row.
pub fn range(last_col: usize, last_row: u32) -> String {
    let mut out = b"A1:".to_vec();
    column_letters(last_col, &mut out);
    out.extend_from_slice(itoa::Buffer::new().format(last_row).as_bytes());
    String::from_utf8(out).expect("letters and digits")
}

/// Writes cells of one row after another; `begin_row` sets the row number
/// used in the cell references that follow.
pub struct RowWriter {
    /// Letters of every column, back to back; `letter_ends[c]` ends column c.
    letters: Vec<u8>,
    letter_ends: Vec<usize>,
    row_digits: itoa::Buffer,
    row_len: usize,
    row_text: [u8; 10],
}

impl RowWriter {
    pub fn new(columns: usize) -> Self {
        let mut letters = Vec::new();
        let letter_ends = (0..columns)
            .map(|c| {
                column_letters(c, &mut letters);
                letters.len()
            })
            .collect();
        Self {
            letters,
            letter_ends,
            row_digits: itoa::Buffer::new(),
            row_len: 0,
            row_text: [0; 10],
        }
    }

    pub fn begin_row(&mut self, out: &mut Vec<u8>, row: u32) {
        let digits = self.row_digits.format(row).as_bytes();
        self.row_len = digits.len();
        self.row_text[..digits.len()].copy_from_slice(digits);
        out.extend_from_slice(b"<row r=\"");
        out.extend_from_slice(digits);
        out.extend_from_slice(b"\">");
    }

    pub fn end_row(out: &mut Vec<u8>) {
        out.extend_from_slice(b"</row>");
    }

    /// `<c r="B7"` plus the style when there is one.
    fn open_cell(&self, out: &mut Vec<u8>, col: usize, style: u32) {
        let start = if col == 0 {
            0
        } else {
            self.letter_ends[col - 1]
        };
        out.extend_from_slice(b"<c r=\"");
        out.extend_from_slice(&self.letters[start..self.letter_ends[col]]);
        out.extend_from_slice(&self.row_text[..self.row_len]);
        out.push(b'"');
        if style != 0 {
            out.extend_from_slice(b" s=\"");
            out.extend_from_slice(itoa::Buffer::new().format(style).as_bytes());
            out.push(b'"');
        }
    }

    pub fn int(&self, out: &mut Vec<u8>, col: usize, style: u32, value: i64) {
        self.open_cell(out, col, style);
        out.extend_from_slice(b"><v>");
        out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        out.extend_from_slice(b"</v></c>");
    }

    /// `value` is finite: batches refuse NAN and INF.
    pub fn float(&self, out: &mut Vec<u8>, col: usize, style: u32, value: f64) {
        self.open_cell(out, col, style);
        out.extend_from_slice(b"><v>");
        // Whole numbers (every date) without zmij's ".0": less XML to deflate.
        if value.abs() < 1e15 && schema::is_whole(value) {
            out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
        } else if !schema::write_short_decimal(value, out) {
            out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
        }
        out.extend_from_slice(b"</v></c>");
    }

    pub fn bool(&self, out: &mut Vec<u8>, col: usize, value: bool) {
        self.open_cell(out, col, 0);
        out.extend_from_slice(if value {
            b" t=\"b\"><v>1</v></c>"
        } else {
            b" t=\"b\"><v>0</v></c>"
        });
    }

    /// An inline string: no shared-string table to hold in memory.
    pub fn text(&self, out: &mut Vec<u8>, col: usize, style: u32, value: &str) {
        self.open_cell(out, col, style);
        let edge_space = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t' | b'\n' | b'\r'));
        let bytes = value.as_bytes();
        if edge_space(bytes.first()) || edge_space(bytes.last()) {
            out.extend_from_slice(b" t=\"inlineStr\"><is><t xml:space=\"preserve\">");
        } else {
            out.extend_from_slice(b" t=\"inlineStr\"><is><t>");
        }
        escape_text(value, out);
        out.extend_from_slice(b"</t></is></c>");
    }
}

/// Escapes text for element content. Characters XML 1.0 cannot carry or
/// would change (C0 controls but tab and LF, U+FFFE, U+FFFF) become OOXML's
/// `_xHHHH_`, which Excel shows
/// as the character; a literal `_xHHHH_` gets its underscore escaped so it
/// reads back unchanged.
pub fn escape_text(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (replacement, len): (&[u8], usize) = match b {
            b'<' => (b"&lt;", 1),
            b'>' => (b"&gt;", 1),
            b'&' => (b"&amp;", 1),
            // XML parsers read a raw CR as LF (XML 1.0, 2.11): CR is escaped
            // with the other control characters, as Excel itself does.
            b'\t' | b'\n' => {
                i += 1;
                continue;
            }
            0..=0x1F => {
                out.extend_from_slice(&bytes[copied..i]);
                out.extend_from_slice(b"_x00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xF)]);
                out.push(b'_');
                i += 1;
                copied = i;
                continue;
            }
            b'_' if is_escape_sequence(&bytes[i..]) => (b"_x005F_", 1),
            0xEF if bytes[i..].starts_with(&[0xEF, 0xBF, 0xBE]) => (b"_xFFFE_", 3),
            0xEF if bytes[i..].starts_with(&[0xEF, 0xBF, 0xBF]) => (b"_xFFFF_", 3),
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[copied..i]);
        out.extend_from_slice(replacement);
        i += len;
        copied = i;
    }
    out.extend_from_slice(&bytes[copied..]);
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `_xHHHH_` with four hex digits, which readers decode as one character.
fn is_escape_sequence(bytes: &[u8]) -> bool {
    bytes.len() >= 7
        && bytes[1] == b'x'
        && bytes[2..6].iter().all(u8::is_ascii_hexdigit)
        && bytes[6] == b'_'
}

/// Escapes a short text (a name, a title) for an attribute value or element.
/// Characters XML cannot carry are left out: these texts are labels, and
/// `_xHHHH_` is only decoded in cell text.
pub fn escape_attribute(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            // As character references: a parser normalises raw ones in attributes.
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\u{0}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}' => {}
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = Vec::new();
        escape_text(text, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn columns_are_lettered_like_excel() {
        for (col, letters) in [
            (0, "A"),
            (25, "Z"),
            (26, "AA"),
            (701, "ZZ"),
            (702, "AAA"),
            (16_383, "XFD"),
        ] {
            let mut out = Vec::new();
            column_letters(col, &mut out);
            assert_eq!(out, letters.as_bytes(), "column {col}");
        }
        assert_eq!(range(2, 9), "A1:C9");
    }

    #[test]
    fn text_is_escaped_for_xml_and_ooxml() {
        assert_eq!(escaped("a<b>&c \"q\" 张"), "a&lt;b&gt;&amp;c \"q\" 张");
        assert_eq!(escaped("tab\tnl\ncr\r"), "tab\tnl\ncr_x000D_");
        assert_eq!(
            escaped("nul\0bel\x07esc\x1b"),
            "nul_x0000_bel_x0007_esc_x001B_"
        );
        assert_eq!(
            escaped("_x0041_ and _x12_ and _xZZZZ_"),
            "_x005F_x0041_ and _x12_ and _xZZZZ_"
        );
        assert_eq!(
            escaped("\u{FFFE}\u{FFFF}\u{FFFD}"),
            "_xFFFE__xFFFF_\u{FFFD}"
        );
    }

    #[test]
    fn cells_carry_their_reference_style_and_type() {
        let mut w = RowWriter::new(28);
        let mut out = Vec::new();
        w.begin_row(&mut out, 1_048_576);
        w.int(&mut out, 0, 0, -42);
        w.float(&mut out, 1, 3, 12.5);
        w.float(&mut out, 2, 2, 46_377.0);
        w.bool(&mut out, 3, true);
        w.text(&mut out, 27, 0, " padded");
        RowWriter::end_row(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<row r=\"1048576\"><c r=\"A1048576\"><v>-42</v></c><c r=\"B1048576\" s=\"3\"><v>12.5</v></c>\
             <c r=\"C1048576\" s=\"2\"><v>46377</v></c><c r=\"D1048576\" t=\"b\"><v>1</v></c>\
             <c r=\"AB1048576\" t=\"inlineStr\"><is><t xml:space=\"preserve\"> padded</t></is></c></row>"
        );
    }
}
