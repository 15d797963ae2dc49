//! A small parser of Python literals (what `repr()` writes for dicts of strings and numbers) into
//! [`serde_json::Value`]: the UCSD Steam files are `str(dict)` lines, not JSON.
//!
//! Supported: strings in either quote (with `u`/`b`/`r` prefixes and Python's escapes, surrogate
//! pairs combined), integers (with `_` and Python 2's `L`), floats, `True`/`False`/`None`,
//! `nan`/`inf` (as `null`), lists, tuples and sets (as arrays) and dicts (keys turned into
//! strings). Nesting is limited to [`MAX_DEPTH`] levels.

use serde_json::{Map, Number, Value};

/// Deepest nesting accepted (guards the recursion against hostile input).
const MAX_DEPTH: usize = 128;

/// Parses one complete Python literal; the error says what was expected and where (byte offset).
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        src: text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos < p.bytes.len() {
        return Err(p.err("end of the literal"));
    }
    Ok(value)
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, expected: &str) -> String {
        match self.src.get(self.pos..).and_then(|s| s.chars().next()) {
            Some(c) => format!(
                "Python literal: expected {expected} at byte {}, found `{c}`",
                self.pos
            ),
            None => format!("Python literal: expected {expected}, found the end of the line"),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "Python literal: nested deeper than {MAX_DEPTH} levels"
            ));
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.dict_or_set(depth),
            Some(b'[') => self.sequence(b']', depth),
            Some(b'(') => self.sequence(b')', depth),
            Some(b'\'' | b'"') => self.string(false).map(Value::String),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.') => self.number(),
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.word(),
            _ => Err(self.err("a value")),
        }
    }

    /// A bare word: a keyword constant, or a string prefix followed by a quote.
    fn word(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.pos += 1;
        }
        let word = &self.src[start..self.pos];
        if matches!(self.peek(), Some(b'\'' | b'"'))
            && word.len() <= 2
            && word.chars().all(|c| "uUbBrR".contains(c))
        {
            let raw = word.contains(['r', 'R']);
            return self.string(raw).map(Value::String);
        }
        match word {
            "True" => Ok(Value::Bool(true)),
            "False" => Ok(Value::Bool(false)),
            "None" | "nan" | "inf" => Ok(Value::Null),
            _ => {
                self.pos = start;
                Err(self.err("a value (True, False, None, a number, a string, [...], {...})"))
            }
        }
    }

    fn sequence(&mut self, close: u8, depth: usize) -> Result<Value, String> {
        self.pos += 1; // the opening bracket
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(Value::Array(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b) if b == close => {}
                _ => return Err(self.err(&format!("`,` or `{}`", close as char))),
            }
        }
    }

    fn dict_or_set(&mut self, depth: usize) -> Result<Value, String> {
        self.pos += 1; // `{`
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(Map::new()));
        }
        let first = self.value(depth + 1)?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            // A set literal: `{a, b}`.
            let mut items = vec![first];
            loop {
                self.skip_ws();
                match self.peek() {
                    Some(b'}') => {
                        self.pos += 1;
                        return Ok(Value::Array(items));
                    }
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                        if self.peek() != Some(b'}') {
                            items.push(self.value(depth + 1)?);
                        }
                    }
                    _ => return Err(self.err("`,`, `:` or `}`")),
                }
            }
        }
        let mut map = Map::new();
        let mut key = first;
        loop {
            let key_text = match key {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => if b { "True" } else { "False" }.to_string(),
                Value::Null => "None".to_string(),
                _ => return Err("Python literal: a dict key must be a string or number".into()),
            };
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err("`:`"));
            }
            self.pos += 1;
            let value = self.value(depth + 1)?;
            map.insert(key_text, value);
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Value::Object(map));
                    }
                    key = self.value(depth + 1)?;
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.err("`,` or `}`")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        // `-inf` / `-nan` as written by repr() of floats.
        if self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            return match self.word()? {
                Value::Null => Ok(Value::Null),
                _ => {
                    self.pos = start;
                    Err(self.err("a number"))
                }
            };
        }
        while let Some(b) = self.peek() {
            let sign_after_exp =
                (b == b'-' || b == b'+') && matches!(self.bytes[self.pos - 1], b'e' | b'E');
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || sign_after_exp {
                self.pos += 1;
            } else {
                break;
            }
        }
        let text: String = self.src[start..self.pos]
            .chars()
            .filter(|&c| c != '_')
            .collect();
        let int_text = text.strip_suffix(['L', 'l']).unwrap_or(&text);
        if let Ok(i) = int_text.parse::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        if let Ok(u) = int_text.parse::<u64>() {
            return Ok(Value::Number(u.into()));
        }
        match text.parse::<f64>() {
            Ok(f) => Ok(Number::from_f64(f).map_or(Value::Null, Value::Number)),
            Err(_) => {
                self.pos = start;
                Err(self.err("a number"))
            }
        }
    }

    /// A quoted string starting at the quote (any prefix already consumed).
    fn string(&mut self, raw: bool) -> Result<String, String> {
        let quote = self.bytes[self.pos];
        let triple = self.bytes[self.pos..].starts_with(&[quote; 3]);
        self.pos += if triple { 3 } else { 1 };
        let mut out = String::new();
        let mut pending_high: Option<u32> = None;
        loop {
            // Copy the run of ordinary bytes (quotes and backslashes are ASCII, so the run ends
            // on a character boundary).
            let run_start = self.pos;
            while self.peek().is_some_and(|b| b != quote && b != b'\\') {
                self.pos += 1;
            }
            if self.pos > run_start {
                flush_surrogate(&mut out, &mut pending_high);
                out.push_str(&self.src[run_start..self.pos]);
            }
            match self.peek() {
                None => return Err(self.err("the closing quote of a string")),
                Some(b'\\') if raw => {
                    flush_surrogate(&mut out, &mut pending_high);
                    self.pos += 1;
                    out.push('\\');
                    if let Some(c) = self.src[self.pos..].chars().next() {
                        out.push(c);
                        self.pos += c.len_utf8();
                    }
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out, &mut pending_high)?;
                }
                Some(_) => {
                    if !triple || self.bytes[self.pos..].starts_with(&[quote; 3]) {
                        flush_surrogate(&mut out, &mut pending_high);
                        self.pos += if triple { 3 } else { 1 };
                        return Ok(out);
                    }
                    flush_surrogate(&mut out, &mut pending_high);
                    out.push(quote as char);
                    self.pos += 1;
                }
            }
        }
    }

    /// One escape sequence after its backslash.
    fn escape(&mut self, out: &mut String, pending_high: &mut Option<u32>) -> Result<(), String> {
        let Some(c) = self.src[self.pos..].chars().next() else {
            return Err(self.err("an escape sequence"));
        };
        self.pos += c.len_utf8();
        let simple = match c {
            '\\' => Some('\\'),
            '\'' => Some('\''),
            '"' => Some('"'),
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'v' => Some('\x0b'),
            '\n' => {
                flush_surrogate(out, pending_high);
                return Ok(()); // line continuation
            }
            _ => None,
        };
        if let Some(s) = simple {
            flush_surrogate(out, pending_high);
            out.push(s);
            return Ok(());
        }
        let code = match c {
            'x' => self.hex(2)?,
            'u' => self.hex(4)?,
            'U' => self.hex(8)?,
            '0'..='7' => {
                let mut v = c as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                v
            }
            other => {
                // Python keeps unknown escapes verbatim.
                flush_surrogate(out, pending_high);
                out.push('\\');
                out.push(other);
                return Ok(());
            }
        };
        match (code, pending_high.take()) {
            (0xDC00..=0xDFFF, Some(high)) => {
                let combined = 0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00);
                out.push(char::from_u32(combined).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            (0xD800..=0xDBFF, previous) => {
                if previous.is_some() {
                    out.push(char::REPLACEMENT_CHARACTER);
                }
                *pending_high = Some(code);
            }
            (_, previous) => {
                if previous.is_some() {
                    out.push(char::REPLACEMENT_CHARACTER);
                }
                out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
        }
        Ok(())
    }

    fn hex(&mut self, digits: usize) -> Result<u32, String> {
        let text = self
            .src
            .get(self.pos..self.pos + digits)
            .filter(|t| t.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.err(&format!("{digits} hex digits")))?;
        self.pos += digits;
        u32::from_str_radix(text, 16).map_err(|e| e.to_string())
    }
}

/// A high surrogate not followed by a low one becomes U+FFFD.
fn flush_surrogate(out: &mut String, pending_high: &mut Option<u32>) {
    if pending_high.take().is_some() {
        out.push(char::REPLACEMENT_CHARACTER);
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use serde_json::json;

    #[test]
    fn steam_review_line() {
        let line = r#"{'username': 'Chaos Syren', 'hours': 0.1, 'products': 41, 'product_id': '725280', 'page_order': 0, 'date': '2017-12-17', 'text': 'it\'s "fine"\n', 'early_access': False, 'found_funny': None}"#;
        let v = parse(line).expect("parses");
        assert_eq!(
            v,
            json!({"username": "Chaos Syren", "hours": 0.1, "products": 41,
                   "product_id": "725280", "page_order": 0, "date": "2017-12-17",
                   "text": "it's \"fine\"\n", "early_access": false, "found_funny": null})
        );
    }

    #[test]
    fn strings_numbers_and_containers() {
        assert_eq!(parse(r#""don't""#).unwrap(), json!("don't"));
        assert_eq!(
            parse(r"u'caf\xe9 \u2603 \U0001F600'").unwrap(),
            json!("café ☃ 😀")
        );
        assert_eq!(parse(r"'\ud83d\ude00'").unwrap(), json!("😀"));
        assert_eq!(parse(r"r'a\nb'").unwrap(), json!("a\\nb"));
        assert_eq!(parse("'naïve ✓'").unwrap(), json!("naïve ✓"));
        assert_eq!(parse(r"'\101\0'").unwrap(), json!("A\u{0}"));
        assert_eq!(parse("-12").unwrap(), json!(-12));
        assert_eq!(parse("12L").unwrap(), json!(12));
        assert_eq!(parse("1_000").unwrap(), json!(1000));
        assert_eq!(parse("1.5e-3").unwrap(), json!(0.0015));
        assert_eq!(parse("-inf").unwrap(), json!(null));
        assert_eq!(
            parse("[1, (2, 3), {4}, {}, []]").unwrap(),
            json!([1, [2, 3], [4], {}, []])
        );
        assert_eq!(
            parse("{1: 'a', 'b': [True,],}").unwrap(),
            json!({"1": "a", "b": [true]})
        );
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            "{'a': 1",
            "'open",
            "{'a' 1}",
            "[1 2]",
            "nope",
            "",
            "{'a': 1} x",
            "'\\x4'",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.starts_with("Python literal"), "{bad}: {err}");
        }
        let deep = "[".repeat(500) + &"]".repeat(500);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn never_panics_on_garbage() {
        // Random strings over the characters the parser treats specially (a fixed LCG keeps
        // the test deterministic).
        let alphabet: Vec<char> = "{}[](),:'\"\\uUxrb0123456789.eE+-_LNTF éñ😀\n"
            .chars()
            .collect();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let len = (state >> 59) as usize;
            let text: String = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    alphabet[(state >> 33) as usize % alphabet.len()]
                })
                .collect();
            let _ = parse(&text);
        }
    }
}
