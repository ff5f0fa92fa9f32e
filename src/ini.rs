//! The server's `--config` file, read as PHP reads php.ini: one file of
//! `fluxo.*` keys can serve PHP-FPM and `fluxo-export-server` alike, and
//! a value must mean the same to both (a download secret read with its
//! quotes by one and without by the other made every signed URL fail).

use std::collections::HashMap;

/// `fluxo.key = value` lines (the prefix is optional), `;` and `#` comment
/// lines, `[sections]` ignored; PHP's own `extension=` lines are skipped, so
/// that a `conf.d/fluxo.ini` serves as it is. Values as PHP reads them:
/// * `"double quoted"`: `\"`, `\\` and `\$` are escapes, `${NAME}` is the
///   value of an earlier `fluxo.*` key of the file, else the environment
///   variable;
/// * `'single quoted'`: as written;
/// * unquoted: up to a `;` comment, trimmed, `${NAME}` expanded; `On`,
///   `Yes`, `True` are `1`, and `Off`, `No`, `False`, `None`, `Null` are
///   empty. What PHP reads as an operator or cannot read unquoted
///   (`= " ' & | ^ ~ ! ( )`) is an error: PHP would take `Xk9&mP2q` as `0`.
pub fn parse(
    text: &str,
    known: impl Fn(&str) -> bool,
    env: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut map: HashMap<String, String> = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = |e: String| format!("line {}: {e}", n + 1);
        let section = line.strip_prefix('[').map(str::to_ascii_uppercase);
        // PHP takes any section named HOST… or PATH… as one of those.
        if section.is_some_and(|s| s.starts_with("HOST") || s.starts_with("PATH")) {
            return Err(at(format!(
                "\"{line}\": PHP applies [HOST=…] and [PATH=…] sections to some requests only; the server has none: give it a file of its own"
            )));
        }
        if line.is_empty() || line.starts_with([';', '#', '[']) {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(at(format!("expected key = value, got \"{line}\"")));
        };
        let key = key.trim();
        if matches!(key, "extension" | "zend_extension") {
            continue;
        }
        let key = key.strip_prefix("fluxo.").unwrap_or(key);
        if !known(key) {
            return Err(at(format!("unknown key \"fluxo.{key}\"")));
        }
        let lookup = |name: &str| {
            let earlier = name.strip_prefix("fluxo.").and_then(|k| map.get(k));
            earlier.cloned().or_else(|| env(name))
        };
        let value = value_of(value, &lookup).map_err(|e| at(format!("fluxo.{key}: {e}")))?;
        map.insert(key.to_owned(), value);
    }
    Ok(map)
}

fn value_of(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let raw = raw.trim();
    let (value, rest) = if let Some(body) = raw.strip_prefix('"') {
        double_quoted(body, env)?
    } else if let Some(body) = raw.strip_prefix('\'') {
        let end = body.find('\'').ok_or("a single quote is not closed")?;
        (body[..end].to_owned(), &body[end + 1..])
    } else {
        return unquoted(raw, env);
    };
    let rest = rest.trim_start();
    if !(rest.is_empty() || rest.starts_with(';')) {
        return Err(format!(
            "unexpected \"{rest}\" after the closing quote (a comment starts with ;)"
        ));
    }
    Ok(value)
}

/// An unquoted value: up to a `;` comment; what PHP would read as an
/// expression is refused.
fn unquoted(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let value = raw.split(';').next().unwrap_or_default().trim_end();
    let operator = |c| {
        matches!(
            c,
            '=' | '"' | '\'' | '&' | '|' | '^' | '~' | '!' | '(' | ')'
        )
    };
    if let Some(c) = value.chars().find(|&c| operator(c)) {
        return Err(format!(
            "an unquoted value cannot hold '{c}' (php.ini reads it as an operator, or not at all): put the value in double quotes"
        ));
    }
    // PHP drops a `$` that starts no `${NAME}`.
    if value
        .match_indices('$')
        .any(|(i, _)| !value[i + 1..].starts_with('{'))
    {
        return Err(
            "an unquoted value cannot hold a '$' that starts no ${NAME} (php.ini drops it): put the value in double quotes"
                .to_owned(),
        );
    }
    // PHP replaces the name of one of its constants by its value.
    let constant_like = value.contains('_')
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && value.bytes().next().is_some_and(|b| !b.is_ascii_digit());
    if constant_like {
        return Err(format!(
            "\"{value}\" may be a PHP constant, which php.ini replaces by its value (E_ALL is 32767): put the value in double quotes"
        ));
    }
    let keyword = match value.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => Some("1"),
        "off" | "no" | "false" | "none" | "null" => Some(""),
        _ => None,
    };
    match keyword {
        Some(v) => Ok(v.to_owned()),
        None => expand(value, env),
    }
}

/// The text up to the closing quote, escapes and `${VAR}` applied, and what
/// follows the quote.
fn double_quoted<'a>(
    body: &'a str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, &'a str), String> {
    let mut value = String::new();
    let mut plain_from = 0;
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                value.push_str(&expand(&body[plain_from..i], env)?);
                return Ok((value, &body[i + 1..]));
            }
            '\\' => {
                value.push_str(&expand(&body[plain_from..i], env)?);
                match chars.clone().next() {
                    Some((j, escaped @ ('"' | '\\' | '$'))) => {
                        chars.next();
                        value.push(escaped);
                        plain_from = j + 1;
                    }
                    // Not an escape: the backslash stays (C:\dir).
                    _ => {
                        value.push('\\');
                        plain_from = i + 1;
                    }
                }
            }
            _ => {}
        }
    }
    Err("a double quote is not closed".to_owned())
}

/// `${NAME}` replaced by what `env` gives for it (empty for nothing).
fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("\"${\" without its closing \"}\"")?;
        out.push_str(&env(after[..end].trim()).unwrap_or_default());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(line: &str) -> Result<String, String> {
        let env = |name: &str| (name == "TOKEN").then(|| "t0k".to_owned());
        parse(line, |k| k == "v", env).map(|m| m["v"].clone())
    }

    #[test]
    fn values_read_as_php_reads_them() {
        assert_eq!(read("fluxo.v = \"s3cr3t\" ; shared").unwrap(), "s3cr3t");
        assert_eq!(read("v = x;comment").unwrap(), "x");
        assert_eq!(read("v = /x ; note").unwrap(), "/x");
        assert_eq!(read("v = 'a;b\"c' ; c").unwrap(), "a;b\"c");
        assert_eq!(
            read(r#"v = "a\"b\\c\$d C:\dir""#).unwrap(),
            r#"a"b\c$d C:\dir"#
        );
        assert_eq!(read("v = \"a b=;\"").unwrap(), "a b=;");
        assert_eq!(read("v = ${TOKEN}-x").unwrap(), "t0k-x");
        assert_eq!(read("\u{feff}v = 1").unwrap(), "1", "a BOM");
        assert_eq!(
            read("extension=fluxo.so\nv = 1").unwrap(),
            "1",
            "PHP's own line"
        );
        assert_eq!(
            read("v = \"${TOKEN} ${NOPE}\\${TOKEN}\"").unwrap(),
            "t0k ${TOKEN}"
        );
        assert_eq!(read("v = On").unwrap(), "1");
        assert_eq!(read("v = off").unwrap(), "");
        assert_eq!(read("v = \"off\"").unwrap(), "off");
        assert_eq!(read("v =").unwrap(), "");
    }

    #[test]
    fn what_php_cannot_read_is_an_error_naming_line_and_key() {
        let err = read("; c\nv = YWJj==").unwrap_err();
        assert!(
            err.starts_with("line 2: fluxo.v: an unquoted value cannot hold '='"),
            "{err}"
        );
        for (value, operator) in [
            ("Xk9&mP2q", '&'),
            ("!abc", '!'),
            ("it's", '\''),
            ("~0", '~'),
        ] {
            let err = read(&format!("v = {value}")).unwrap_err();
            assert!(
                err.contains(&format!("cannot hold '{operator}'")),
                "{value}: {err}"
            );
        }
        assert!(read("v = 8f3kP0aZ1qW9xY7v$").unwrap_err().contains("'$'"));
        assert!(read("v = PHP_OS").unwrap_err().contains("PHP constant"));
        assert_eq!(read("v = \"PHP_OS\"").unwrap(), "PHP_OS");
        assert_eq!(read("v = ${ TOKEN }").unwrap(), "t0k");
        assert!(read("[hosts]\nv = 1").unwrap_err().contains("[HOST=…]"));
        assert!(read("[HOST=dl.example.com]\nv = 1")
            .unwrap_err()
            .contains("[HOST=…]"));
        assert!(read("v = \"open").unwrap_err().contains("not closed"));
        assert!(read("v = \"a\" b")
            .unwrap_err()
            .contains("after the closing quote"));
        assert!(read("v = ${TOKEN").unwrap_err().contains("closing"));
        assert!(read("w = 1")
            .unwrap_err()
            .contains("unknown key \"fluxo.w\""));
        assert!(read("v").unwrap_err().contains("expected key = value"));
    }

    #[test]
    fn sections_and_comments_are_skipped() {
        let m = parse(
            "; c\n# c\n[fluxo]\nfluxo.a = 1\nb = \"x y\"\n",
            |_| true,
            |_| None,
        )
        .unwrap();
        assert_eq!((m["a"].as_str(), m["b"].as_str()), ("1", "x y"));
    }

    #[test]
    fn a_value_can_name_an_earlier_key_as_php_allows() {
        let m = parse("a = /srv\nb = \"${fluxo.a}/out\"\n", |_| true, |_| None).unwrap();
        assert_eq!(m["b"], "/srv/out");
    }
}
