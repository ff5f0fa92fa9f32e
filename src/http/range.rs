//! One byte range of a download (RFC 9110 §14), so that an interrupted
//! download of a large export resumes where it stopped instead of starting
//! again. Several ranges in one request are answered with the whole file,
//! as the RFC allows: download clients resume with one.

use std::ops::RangeInclusive;

/// What to send of a file for a request's `Range` and `If-Range` headers.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranged {
    /// The whole file (200): no range asked, or one this answer ignores.
    Whole,
    /// These bytes (206).
    Part(RangeInclusive<u64>),
    /// No byte of the range exists (416).
    Unsatisfiable,
}

/// The strong validator of a stored file. Exports are written once under
/// a new key, so size and modification time tell versions apart.
pub fn etag(len: u64, modified_nanos: u128) -> String {
    format!("\"{len:x}-{modified_nanos:x}\"")
}

/// The part of a file of `len` bytes with entity tag `etag` that `range`
/// asks for. A malformed range is ignored (the whole file), and so is any
/// range under an `If-Range` that names another version of the file: a
/// resumed download must not splice two versions together.
pub fn byte_range(range: Option<&str>, if_range: Option<&str>, etag: &str, len: u64) -> Ranged {
    let Some(range) = range else {
        return Ranged::Whole;
    };
    if if_range.is_some_and(|validator| validator.trim() != etag) {
        return Ranged::Whole;
    }
    let Some((unit, spec)) = range.trim().split_once('=') else {
        return Ranged::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let number = |text: &str| {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // More digits than a u64 holds: past the end of any file.
        Some(text.parse::<u64>().unwrap_or(u64::MAX))
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // `-n`: the last n bytes.
        return match number(last) {
            None => Ranged::Whole,
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if len == 0 => Ranged::Unsatisfiable,
            Some(suffix) => Ranged::Part(len.saturating_sub(suffix)..=len - 1),
        };
    }
    // `a-` and `a-b`.
    let Some(start) = number(first) else {
        return Ranged::Whole;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match number(last) {
            Some(end) if end >= start => end,
            _ => return Ranged::Whole,
        }
    };
    if start >= len {
        Ranged::Unsatisfiable
    } else {
        Ranged::Part(start..=end.min(len - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::{byte_range, etag, Ranged};

    const TAG: &str = "\"64-1\"";

    fn range(header: &str, len: u64) -> Ranged {
        byte_range(Some(header), None, TAG, len)
    }

    #[test]
    fn one_range_is_read_in_each_of_its_forms() {
        assert_eq!(range("bytes=0-9", 100), Ranged::Part(0..=9));
        assert_eq!(range("bytes=90-", 100), Ranged::Part(90..=99));
        assert_eq!(range("bytes=-10", 100), Ranged::Part(90..=99));
        assert_eq!(
            range("bytes=90-500", 100),
            Ranged::Part(90..=99),
            "end clipped"
        );
        assert_eq!(
            range("bytes=-500", 100),
            Ranged::Part(0..=99),
            "suffix clipped"
        );
        assert_eq!(range("Bytes = 5-5", 100), Ranged::Part(5..=5));
        assert_eq!(range("bytes=0-", 1), Ranged::Part(0..=0));
    }

    #[test]
    fn a_range_past_the_end_is_unsatisfiable() {
        assert_eq!(range("bytes=100-", 100), Ranged::Unsatisfiable);
        assert_eq!(range("bytes=100-200", 100), Ranged::Unsatisfiable);
        assert_eq!(range("bytes=-0", 100), Ranged::Unsatisfiable);
        assert_eq!(range("bytes=0-", 0), Ranged::Unsatisfiable);
        assert_eq!(range("bytes=-5", 0), Ranged::Unsatisfiable);
        assert_eq!(
            range("bytes=99999999999999999999999-", 100),
            Ranged::Unsatisfiable
        );
    }

    #[test]
    fn what_is_not_one_valid_byte_range_gets_the_whole_file() {
        for header in [
            "bytes=9-0",
            "bytes=0-9,20-29",
            "items=0-9",
            "bytes=",
            "bytes=-",
            "bytes=a-9",
            "bytes=0-9x",
            "bytes=+1-9",
            "bytes 0-9",
            "",
        ] {
            assert_eq!(range(header, 100), Ranged::Whole, "{header:?}");
        }
        assert_eq!(byte_range(None, None, TAG, 100), Ranged::Whole);
    }

    #[test]
    fn if_range_resumes_only_the_same_version() {
        assert_eq!(
            byte_range(Some("bytes=10-"), Some(TAG), TAG, 100),
            Ranged::Part(10..=99)
        );
        assert_eq!(
            byte_range(Some("bytes=10-"), Some("\"64-2\""), TAG, 100),
            Ranged::Whole
        );
        // A date validator is not this file's tag: the whole file, safely.
        assert_eq!(
            byte_range(
                Some("bytes=10-"),
                Some("Mon, 30 Nov 2026 08:00:00 GMT"),
                TAG,
                100
            ),
            Ranged::Whole
        );
        assert_eq!(etag(100, 1), TAG);
    }
}
