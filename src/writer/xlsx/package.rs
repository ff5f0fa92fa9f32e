//! The small fixed parts of an XLSX package around the sheets: content types,
//! relationships, workbook, styles and document properties. Their layout
//! follows what Excel itself writes, minus the parts an export never needs
//! (theme, shared strings, calculation chain).

use std::fmt::Write as _;

use super::cells::escape_attribute;
use super::Properties;
use crate::schema::LocalDateTime;

const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n";
const MAIN_NS: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
const REL_NS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const PACKAGE_REL_NS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";

/// Excel's width of a character column as it stores it: in widths of the
/// default font's widest digit (7 px in Calibri 11), plus 5 px of padding.
pub const DEFAULT_WIDTH: f64 = 8.43;

/// What the package needs to know of each sheet.
pub struct SheetEntry {
    pub name: String,
    /// The autofilter range (`A1:J100`), when the sheet has one.
    pub autofilter: Option<String>,
}

/// The number formats cells use, in the order of their cell styles.
#[derive(Default)]
pub struct Styles {
    patterns: Vec<String>,
    /// How many characters each pattern shows a date or time in.
    date_widths: Vec<usize>,
    /// How each pattern lays out a number, where it can be sized.
    number_shapes: Vec<Option<PatternShape>>,
}

impl Styles {
    /// Style 0 is Excel's default; style 1 is the bold header.
    pub const HEADER: u32 = 1;

    /// The cell style that shows numbers as `pattern`.
    pub fn number_format(&mut self, pattern: &str) -> u32 {
        let index = match self.patterns.iter().position(|p| p == pattern) {
            Some(i) => i,
            None => {
                self.patterns.push(pattern.to_owned());
                self.date_widths.push(shown_width(pattern));
                self.number_shapes.push(PatternShape::of(pattern));
                self.patterns.len() - 1
            }
        };
        2 + index as u32
    }

    /// How many characters a date or time shows in with `style`: a column
    /// narrower than that shows `####` in Excel.
    pub fn date_width(&self, style: u32) -> usize {
        let index = (style as usize).checked_sub(2);
        index
            .and_then(|i| self.date_widths.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// How many characters `value` shows in with `style`: for the width of
    /// a `width => 'auto'` column, which its text form (`1234567890.5`)
    /// understates when the format groups digits or fixes decimals
    /// (`1,234,567,890.50`).
    pub fn number_width(&self, style: u32, value: f64) -> Option<usize> {
        let index = (style as usize).checked_sub(2)?;
        let shape = self.number_shapes.get(index).copied().flatten()?;
        Some(shape.width(value))
    }

    pub fn xml(&self) -> String {
        let mut custom = String::new();
        let mut custom_count = 0;
        let mut xfs = String::from(
            "<xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\"/>\
             <xf numFmtId=\"0\" fontId=\"1\" fillId=\"0\" borderId=\"0\" xfId=\"0\" applyFont=\"1\"/>",
        );
        for pattern in &self.patterns {
            let id = match builtin_format(pattern) {
                Some(id) => id,
                None => {
                    let id = 164 + custom_count;
                    custom_count += 1;
                    let _ = write!(custom, "<numFmt numFmtId=\"{id}\" formatCode=\"");
                    escape_attribute(pattern, &mut custom);
                    custom.push_str("\"/>");
                    id
                }
            };
            let _ = write!(
                xfs,
                "<xf numFmtId=\"{id}\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\" applyNumberFormat=\"1\"/>"
            );
        }
        let num_fmts = if custom_count == 0 {
            String::new()
        } else {
            format!("<numFmts count=\"{custom_count}\">{custom}</numFmts>")
        };
        format!(
            "{XML_DECLARATION}<styleSheet xmlns=\"{MAIN_NS}\">{num_fmts}\
             <fonts count=\"2\"><font><sz val=\"11\"/><color rgb=\"FF000000\"/><name val=\"Calibri\"/><family val=\"2\"/></font>\
             <font><b/><sz val=\"11\"/><color rgb=\"FF000000\"/><name val=\"Calibri\"/><family val=\"2\"/></font></fonts>\
             <fills count=\"2\"><fill><patternFill patternType=\"none\"/></fill><fill><patternFill patternType=\"gray125\"/></fill></fills>\
             <borders count=\"1\"><border><left/><right/><top/><bottom/><diagonal/></border></borders>\
             <cellStyleXfs count=\"1\"><xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\"/></cellStyleXfs>\
             <cellXfs count=\"{}\">{xfs}</cellXfs>\
             <cellStyles count=\"1\"><cellStyle name=\"Normal\" xfId=\"0\" builtinId=\"0\"/></cellStyles>\
             <dxfs count=\"0\"/><tableStyles count=\"0\" defaultTableStyle=\"TableStyleMedium9\" defaultPivotStyle=\"PivotStyleLight16\"/>\
             </styleSheet>",
            2 + self.patterns.len()
        )
    }
}

/// Formats Excel knows by number; writing them as custom formats would list
/// them twice in Excel's format dialog.
fn builtin_format(pattern: &str) -> Option<u32> {
    Some(match pattern {
        "General" => 0,
        "0" => 1,
        "0.00" => 2,
        "#,##0" => 3,
        "#,##0.00" => 4,
        "0%" => 9,
        "0.00%" => 10,
        "0.00E+00" => 11,
        "@" => 49,
        _ => return None,
    })
}

pub fn content_types(sheets: usize) -> String {
    let mut xml = format!(
        "{XML_DECLARATION}<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
         <Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
         <Default Extension=\"xml\" ContentType=\"application/xml\"/>\
         <Override PartName=\"/docProps/app.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.extended-properties+xml\"/>\
         <Override PartName=\"/docProps/core.xml\" ContentType=\"application/vnd.openxmlformats-package.core-properties+xml\"/>\
         <Override PartName=\"/xl/styles.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml\"/>\
         <Override PartName=\"/xl/workbook.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml\"/>"
    );
    for n in 1..=sheets {
        let _ = write!(
            xml,
            "<Override PartName=\"/xl/worksheets/sheet{n}.xml\" \
             ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/>"
        );
    }
    xml.push_str("</Types>");
    xml
}

pub fn root_relationships() -> String {
    format!(
        "{XML_DECLARATION}<Relationships xmlns=\"{PACKAGE_REL_NS}\">\
         <Relationship Id=\"rId1\" Type=\"{REL_NS}/officeDocument\" Target=\"xl/workbook.xml\"/>\
         <Relationship Id=\"rId2\" Type=\"http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties\" Target=\"docProps/core.xml\"/>\
         <Relationship Id=\"rId3\" Type=\"{REL_NS}/extended-properties\" Target=\"docProps/app.xml\"/>\
         </Relationships>"
    )
}

pub fn workbook(sheets: &[&SheetEntry]) -> String {
    let mut list = String::new();
    let mut filters = String::new();
    for (i, sheet) in sheets.iter().enumerate() {
        list.push_str("<sheet name=\"");
        escape_attribute(&sheet.name, &mut list);
        let _ = write!(list, "\" sheetId=\"{}\" r:id=\"rId{}\"/>", i + 1, i + 1);
        if let Some(range) = &sheet.autofilter {
            let _ = write!(
                filters,
                "<definedName name=\"_xlnm._FilterDatabase\" localSheetId=\"{i}\" hidden=\"1\">"
            );
            // A sheet name in a formula is quoted, with quotes doubled.
            escape_attribute(
                &format!("'{}'!{}", sheet.name.replace('\'', "''"), absolute(range)),
                &mut filters,
            );
            filters.push_str("</definedName>");
        }
    }
    let defined_names = if filters.is_empty() {
        String::new()
    } else {
        format!("<definedNames>{filters}</definedNames>")
    };
    format!(
        "{XML_DECLARATION}<workbook xmlns=\"{MAIN_NS}\" xmlns:r=\"{REL_NS}\">\
         <workbookPr/><bookViews><workbookView xWindow=\"240\" yWindow=\"15\" windowWidth=\"16095\" windowHeight=\"9660\"/></bookViews>\
         <sheets>{list}</sheets>{defined_names}<calcPr calcId=\"124519\" fullCalcOnLoad=\"1\"/></workbook>"
    )
}

/// `A1:J100` as `$A$1:$J$100`.
fn absolute(range: &str) -> String {
    range
        .split(':')
        .map(|cell| {
            let digits = cell
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(cell.len());
            format!("${}${}", &cell[..digits], &cell[digits..])
        })
        .collect::<Vec<_>>()
        .join(":")
}

pub fn workbook_relationships(sheets: usize) -> String {
    let mut xml = format!("{XML_DECLARATION}<Relationships xmlns=\"{PACKAGE_REL_NS}\">");
    for n in 1..=sheets {
        let _ = write!(
            xml,
            "<Relationship Id=\"rId{n}\" Type=\"{REL_NS}/worksheet\" Target=\"worksheets/sheet{n}.xml\"/>"
        );
    }
    let _ = write!(
        xml,
        "<Relationship Id=\"rId{}\" Type=\"{REL_NS}/styles\" Target=\"styles.xml\"/></Relationships>",
        sheets + 1
    );
    xml
}

pub fn app_properties(properties: &Properties, sheets: &[&SheetEntry]) -> String {
    let mut titles = String::new();
    for sheet in sheets {
        titles.push_str("<vt:lpstr>");
        escape_attribute(&sheet.name, &mut titles);
        titles.push_str("</vt:lpstr>");
    }
    let mut company = String::new();
    escape_attribute(properties.company.as_deref().unwrap_or(""), &mut company);
    let n = sheets.len();
    format!(
        "{XML_DECLARATION}<Properties xmlns=\"http://schemas.openxmlformats.org/officeDocument/2006/extended-properties\" \
         xmlns:vt=\"http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes\">\
         <Application>Fluxo Export</Application><DocSecurity>0</DocSecurity><ScaleCrop>false</ScaleCrop>\
         <HeadingPairs><vt:vector size=\"2\" baseType=\"variant\"><vt:variant><vt:lpstr>Worksheets</vt:lpstr></vt:variant>\
         <vt:variant><vt:i4>{n}</vt:i4></vt:variant></vt:vector></HeadingPairs>\
         <TitlesOfParts><vt:vector size=\"{n}\" baseType=\"lpstr\">{titles}</vt:vector></TitlesOfParts>\
         <Company>{company}</Company><LinksUpToDate>false</LinksUpToDate><SharedDoc>false</SharedDoc>\
         <HyperlinksChanged>false</HyperlinksChanged><AppVersion>12.0000</AppVersion></Properties>"
    )
}

/// `now` stands in for a `created` time the caller did not give.
pub fn core_properties(properties: &Properties, now: LocalDateTime) -> String {
    let created = w3c_datetime(properties.created.unwrap_or(now));
    let mut title = String::new();
    if let Some(t) = &properties.title {
        title.push_str("<dc:title>");
        escape_attribute(t, &mut title);
        title.push_str("</dc:title>");
    }
    let mut author = String::new();
    escape_attribute(properties.author.as_deref().unwrap_or(""), &mut author);
    format!(
        "{XML_DECLARATION}<cp:coreProperties xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:dcterms=\"http://purl.org/dc/terms/\" \
         xmlns:dcmitype=\"http://purl.org/dc/dcmitype/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
         {title}<dc:creator>{author}</dc:creator><cp:lastModifiedBy>{author}</cp:lastModifiedBy>\
         <dcterms:created xsi:type=\"dcterms:W3CDTF\">{created}</dcterms:created>\
         <dcterms:modified xsi:type=\"dcterms:W3CDTF\">{created}</dcterms:modified></cp:coreProperties>"
    )
}

fn w3c_datetime(t: LocalDateTime) -> String {
    let (y, m, d, h, mi, s) = t.parts();
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// How a number pattern lays out numbers: its first section, and its
/// second for negative numbers if it has one (Excel shows those without a
/// minus of their own: `(1,234.50)`, `-"€"1,234.50`; an empty one shows
/// nothing). Patterns it cannot size (`@`, conditions, fractions, thousands
/// scaling) are `None`: the number's own text is used for them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct PatternShape {
    positive: NumberShape,
    negative: Negative,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Negative {
    /// No second section: the first, with a minus.
    AsPositive,
    Section(NumberShape),
    /// An empty second section.
    Hidden,
}

impl PatternShape {
    fn of(pattern: &str) -> Option<Self> {
        let mut sections = sections(pattern);
        let positive = NumberShape::of(sections.next().unwrap_or_default())?;
        let negative = match sections.next() {
            None => Negative::AsPositive,
            Some("") => Negative::Hidden,
            Some(section) => Negative::Section(NumberShape::of(section)?),
        };
        Some(Self { positive, negative })
    }

    fn width(self, value: f64) -> usize {
        match self.negative {
            Negative::Section(negative) if value < 0.0 => negative.width(-value),
            Negative::Hidden if value < 0.0 => 0,
            _ => self.positive.width(value),
        }
    }
}

/// The `;`-separated sections of a pattern, past quoted text and the
/// character after `\\`, `_` or `*`.
fn sections(pattern: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(pattern);
    std::iter::from_fn(move || {
        let text = rest?;
        let at = unquoted(text).find(|&(_, c)| c == ';').map(|(at, _)| at);
        rest = at.map(|at| &text[at + 1..]);
        Some(at.map_or(text, |at| &text[..at]))
    })
}

/// The characters of a pattern outside quoted text, with their byte
/// offsets, less the character each `\\`, `_` or `*` applies to.
fn unquoted(pattern: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut quoted, mut taken) = (false, false);
    pattern.char_indices().filter(move |&(_, c)| {
        if taken {
            taken = false;
            return false;
        }
        match c {
            '"' => {
                quoted = !quoted;
                false
            }
            _ if quoted => false,
            '\\' | '_' | '*' => {
                taken = true;
                true
            }
            _ => true,
        }
    })
}

/// What of one section of a number pattern decides how wide a number
/// shows in it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct NumberShape {
    /// `#,##0`: a separator every three digits.
    grouping: bool,
    /// `00000`: at least this many digits before the point.
    min_digits: usize,
    /// Digit places after the point.
    decimals: usize,
    /// `%`: the value shows times 100.
    percent: bool,
    /// `0.00E+00`: a mantissa and an exponent of at least this many digits.
    exponent: Option<usize>,
    /// Other characters shown: currency signs, quoted text, spaces.
    literals: usize,
    /// Any digit placeholder: a section of text alone (`"n/a"`) shows no number.
    digits: bool,
}

impl NumberShape {
    fn of(section: &str) -> Option<Self> {
        // `General` shows the number as its own text: what None leads to.
        let general = section.to_ascii_lowercase().contains("general");
        if general || unquoted(section).any(|(_, c)| matches!(c, '@' | '/' | '<' | '>' | '=')) {
            return None;
        }
        let mut shape = Self::default();
        let mut after_point = false;
        let mut chars = section.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' => shape.literals += chars.by_ref().take_while(|&q| q != '"').count(),
                // `\x` shows x; `_x` leaves the width of x.
                '\\' | '_' => shape.literals += usize::from(chars.next().is_some()),
                // `*x` repeats x to fill the cell: no width of its own.
                '*' => drop(chars.next()),
                // Colours and locales (conditions were refused above).
                '[' => chars.by_ref().take_while(|&q| q != ']').for_each(drop),
                '.' => after_point = true,
                'e' | 'E' => {
                    let digits = chars
                        .by_ref()
                        .filter(|d| matches!(d, '0' | '#' | '?'))
                        .count();
                    shape.exponent = Some(digits.max(2));
                }
                '0' | '#' | '?' if after_point => {
                    shape.digits = true;
                    shape.decimals += 1;
                }
                '0' | '?' => {
                    shape.digits = true;
                    shape.min_digits += 1;
                }
                '#' => shape.digits = true,
                // A comma after the last digit divides by 1,000: not sized.
                ',' if !matches!(chars.peek(), Some('0' | '#' | '?' | ',')) => return None,
                ',' => shape.grouping |= !after_point,
                '%' => {
                    shape.percent = true;
                    shape.literals += 1;
                }
                c => shape.literals += crate::schema::char_width(c),
            }
        }
        Some(shape)
    }

    fn width(self, value: f64) -> usize {
        if !self.digits {
            return self.literals;
        }
        let sign = usize::from(value < 0.0);
        let decimals = if self.decimals > 0 {
            self.decimals + 1
        } else {
            0
        };
        if let Some(exponent) = self.exponent {
            // 1.50E+100: the mantissa, then E, the exponent's sign and digits.
            let exponent_digits = exponent.max(if value.abs() >= 1e100 { 3 } else { 2 });
            return sign + self.min_digits.max(1) + decimals + 2 + exponent_digits + self.literals;
        }
        let value = if self.percent { value * 100.0 } else { value };
        let whole = value.abs().trunc();
        let digits = if whole < 10.0 {
            1
        } else {
            whole.log10() as usize + 1
        };
        let digits = digits.max(self.min_digits);
        let groups = if self.grouping { (digits - 1) / 3 } else { 0 };
        sign + digits + groups + decimals + self.literals
    }
}

/// The most characters a date pattern shows: a run of one code letter
/// shows as many as its longest value (`d`, `m`, `h`, `s`: 2; `mmm`: 3;
/// `mmmm`, `dddd`: a name, up to 9; `mmmmm`: 1; `aaaa`: a CJK weekday),
/// `AM/PM` 2, an elapsed `[h]` the hours since 1900; a colour or locale in
/// `[...]`, quotes and escapes none; anything else itself (a CJK character
/// two, as [`crate::schema::display_width`] counts).
fn shown_width(pattern: &str) -> usize {
    let lower = pattern.to_ascii_lowercase();
    let mut rest = lower.as_str();
    let mut width = 0;
    while let Some(c) = rest.chars().next() {
        let run = rest.len() - rest.trim_start_matches(c).len();
        let (shown, len) = match c {
            _ if rest.starts_with("am/pm") => (2, 5),
            '[' => {
                let inside = rest[1..].split(']').next().unwrap_or_default();
                let end = (1 + inside.len() + 1).min(rest.len());
                // Elapsed time since 1900: seven digits of hours for a
                // date of this century, nine of minutes, eleven of seconds.
                let elapsed = match inside.bytes().next() {
                    _ if !inside.bytes().all(|b| b"hms".contains(&b)) => 0,
                    Some(b'h') => 7,
                    Some(b'm') => 9,
                    Some(b's') => 11,
                    _ => 0,
                };
                (elapsed, end)
            }
            // `aaa`, `aaaa`: a CJK weekday, 一 or 星期一.
            'a' if run >= 3 => (if run == 3 { 2 } else { 6 }, run),
            '"' | '\\' => (0, 1),
            'y' => (if run <= 2 { 2 } else { 4 }, run),
            'm' | 'd' => (
                match run {
                    1 | 2 => 2,
                    3 => 3,
                    4 => 9,
                    _ if c == 'm' => 1,
                    _ => 9,
                },
                run,
            ),
            'h' | 's' => (run.max(2), run),
            _ => (crate::schema::char_width(c), c.len_utf8()),
        };
        width += shown;
        rest = &rest[len..];
    }
    width
}

/// A column's look; `None` width keeps Excel's default.
#[derive(Clone, Copy, Default)]
pub struct ColumnLook {
    pub width: Option<f64>,
    pub hidden: bool,
}

/// Everything of a worksheet before its first row: what only the finished
/// sheet knows (its extent, auto widths) goes here, so it is written last
/// and put in front.
pub fn sheet_head(selected: bool, dimension: &str, columns: &[ColumnLook]) -> String {
    let mut cols = String::new();
    for (i, look) in columns.iter().enumerate() {
        if look.width.is_none() && !look.hidden {
            continue;
        }
        let width = stored_width(look.width.unwrap_or(DEFAULT_WIDTH));
        let _ = write!(
            cols,
            "<col min=\"{n}\" max=\"{n}\" width=\"{width}\"",
            n = i + 1
        );
        if look.hidden {
            cols.push_str(" hidden=\"1\"");
        }
        cols.push_str(" customWidth=\"1\"/>");
    }
    if !cols.is_empty() {
        cols = format!("<cols>{cols}</cols>");
    }
    let tab_selected = if selected { " tabSelected=\"1\"" } else { "" };
    format!(
        "{XML_DECLARATION}<worksheet xmlns=\"{MAIN_NS}\" xmlns:r=\"{REL_NS}\"><dimension ref=\"{dimension}\"/>\
         <sheetViews><sheetView{tab_selected} workbookViewId=\"0\">\
         <pane ySplit=\"1\" topLeftCell=\"A2\" activePane=\"bottomLeft\" state=\"frozen\"/>\
         <selection pane=\"bottomLeft\"/></sheetView></sheetViews>\
         <sheetFormatPr defaultRowHeight=\"15\"/>{cols}<sheetData>"
    )
}

pub fn sheet_tail(autofilter: Option<&str>) -> String {
    let filter = autofilter.map_or(String::new(), |range| {
        format!("<autoFilter ref=\"{range}\"/>")
    });
    format!(
        "</sheetData>{filter}<pageMargins left=\"0.7\" right=\"0.7\" top=\"0.75\" bottom=\"0.75\" header=\"0.3\" footer=\"0.3\"/></worksheet>"
    )
}

/// A width in characters as Excel stores it (whole pixels, in 1/256ths).
fn stored_width(chars: f64) -> f64 {
    let pixels = if chars < 1.0 {
        (chars * 12.0).round()
    } else {
        (chars * 7.0).round() + 5.0
    };
    (pixels / 7.0 * 256.0).trunc() / 256.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_as_wide_as_their_pattern_shows_them() {
        let sized = |pattern: &str, value| PatternShape::of(pattern).map(|s| s.width(value));
        let width = |pattern: &str, value| sized(pattern, value).expect(pattern);
        assert_eq!(width("#,##0.00", 1_234_567_890.5), "1,234,567,890.50".len());
        assert_eq!(width("0.00%", 0.25), "25.00%".len());
        assert_eq!(width("\"$\"#,##0", -1234.0), "-$1,234".len());
        assert_eq!(width("[Red]0.0_);(0.0)", 7.25), "7.3 ".len());
        assert_eq!(width("0", 999.0), 3);
        assert_eq!(width("0", 1000.0), 4);
        assert_eq!(width("#,##0", 0.5), 1);
        assert_eq!(width("00000", 501.0), 5);
        assert_eq!(width("0.00E+00", 1.5e100), "1.50E+100".len());
        assert_eq!(width("0.00E+00", -1.23e14), "-1.23E+14".len());
        assert_eq!(width("#,##0.00;[Red]-#,##0.00", -1234.5), "-1,234.50".len());
        // A negative section shows the number without a minus of its own.
        let euro = "\"€\"#,##0.00;[Red]-\"€\"#,##0.00";
        assert_eq!(width(euro, -1_234_567.5), "-€1,234,567.50".chars().count());
        assert_eq!(width(euro, 1_234_567.5), "€1,234,567.50".chars().count());
        assert_eq!(width("[Red]0.0_);(0.0)", -7.25), "(7.3)".len());
        assert_eq!(width("0;\"minus \"0", -12.0), "minus 12".len());
        assert_eq!(width("0;\"a;b\"0", -12.0), "a;b12".len(), "a quoted ;");
        assert_eq!(width("0;;0", -12.0), 0, "an empty section shows nothing");
        assert_eq!(
            width("0_;", -5.0),
            "-5 ".len(),
            "_; leaves the width of ;, no section"
        );
        assert_eq!(width("0;\"n/a\"", -5.0), "n/a".len(), "quoted /");
        assert_eq!(width("0;-0;0;@", -5.0), "-5".len());
        for unsized_pattern in [
            "@",
            "[>=100]0;0.0",
            "# ??/??",
            "0.0,,\"M\"",
            "0;0/0",
            "General",
        ] {
            assert_eq!(PatternShape::of(unsized_pattern), None, "{unsized_pattern}");
        }
    }

    #[test]
    fn date_patterns_are_as_wide_as_what_they_show() {
        assert_eq!(shown_width("yyyy-mm-dd"), 10);
        assert_eq!(shown_width("yyyy-mm-dd hh:mm:ss"), 19);
        assert_eq!(shown_width("d mmmm yyyy"), 17);
        assert_eq!(shown_width("d/m/yyyy"), 10, "28/12/2026");
        assert_eq!(shown_width("m/d/yyyy h:mm"), 16, "12/28/2026 10:20");
        assert_eq!(shown_width("[$-409]h:mm AM/PM"), 8);
        assert_eq!(shown_width("[Red][h]:mm:ss"), 13, "hours since 1900");
        assert_eq!(shown_width("mmmmm yy"), 4);
        assert_eq!(shown_width("yyyy-mm-dd aaaa"), 17);
        assert_eq!(shown_width("0.00["), 4, "an unclosed bracket");
        assert_eq!(shown_width("["), 0);
        assert_eq!(shown_width("yyyy\\年m\\月d\\日"), 14);
        let mut styles = Styles::default();
        let date = styles.number_format("yyyy-mm-dd");
        assert_eq!(styles.date_width(date), 10);
        assert_eq!(styles.date_width(0), 0);
    }

    #[test]
    fn widths_are_stored_as_excel_stores_them() {
        assert_eq!(stored_width(DEFAULT_WIDTH), 9.140625);
        assert_eq!(stored_width(20.0), 20.7109375);
    }

    #[test]
    fn builtin_formats_keep_their_ids_and_others_get_custom_ones() {
        let mut styles = Styles::default();
        assert_eq!(styles.number_format("yyyy-mm-dd"), 2);
        assert_eq!(styles.number_format("#,##0.00"), 3);
        assert_eq!(styles.number_format("yyyy-mm-dd"), 2);
        let xml = styles.xml();
        assert!(xml.contains(
            "<numFmts count=\"1\"><numFmt numFmtId=\"164\" formatCode=\"yyyy-mm-dd\"/></numFmts>"
        ));
        assert!(xml.contains("<cellXfs count=\"4\">"));
        assert!(xml.contains("<xf numFmtId=\"4\" "));
    }

    #[test]
    fn filter_ranges_are_absolute_and_sheet_names_quoted() {
        let xml = workbook(&[&SheetEntry {
            name: "O'Brien & Co".into(),
            autofilter: Some("A1:J100".into()),
        }]);
        assert!(xml.contains("<sheet name=\"O'Brien &amp; Co\" sheetId=\"1\" r:id=\"rId1\"/>"));
        assert!(xml.contains(
            "localSheetId=\"0\" hidden=\"1\">'O''Brien &amp; Co'!$A$1:$J$100</definedName>"
        ));
    }
}
