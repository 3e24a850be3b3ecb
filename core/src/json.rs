//! A small JSON reader and writer, so that the proxy-wasm filter carries no
//! serde_json (and no serde monomorphisations) in its `.wasm`.
//!
//! The reader pulls values in document order, as serde_json's deserializer
//! does, and accepts and refuses exactly what `serde_json::from_slice` does
//! for the types read through it (checked against serde_json in the tests):
//!
//! * [`Reader::skip`] is serde_json's `ignore_value` (what `IgnoredAny` and
//!   an unknown field read): syntax only, no depth limit, strings not
//!   checked for UTF-8 or paired surrogates;
//! * [`Reader::string`], [`Reader::u64`], [`Reader::structure`],
//!   [`Reader::seq`] and [`Reader::option`] are `String`, `u64`, a derived
//!   struct (a JSON object, or an array of its fields in order), `Vec<T>`
//!   and `Option<T>`; structures and sequences count against serde_json's
//!   depth limit of 128;
//! * [`Reader::value`] is `serde_json::Value`: every string checked, every
//!   number in range, the same depth limit.
//!
//! Errors carry serde_json's words (`unknown field `x`, expected one of
//! ...`, `invalid type: string "x", expected u64`, `EOF while parsing an
//! object at line 1 column 9`).
//!
//! The writer ([`write_str`]) escapes as serde_json's serializer does, so
//! that bodies and passes keep their exact bytes.

use core::fmt::Write as _;

/// Why a document was refused: serde_json's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T> = core::result::Result<T, Error>;

/// serde_json's depth limit for structures, sequences and values.
const DEPTH: u32 = 128;

/// A number as [`Reader::value`] reads it (serde_json's `Number`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    PosInt(u64),
    NegInt(i64),
    Float(f64),
}

/// A pull reader over one JSON document.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    depth: u32,
}

/// How a structure was given: as an object, or as an array of its fields
/// (with how many elements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Object,
    Array(usize),
}

/// The fields a structure read, and its shape.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    mask: u64,
    shape: Shape,
}

impl Seen {
    /// Whether field `i` was given.
    pub fn has(&self, i: usize) -> bool {
        i < 64 && self.mask & (1 << i) != 0
    }

    /// `Ok` when required field `i` (named `name`) was given; else serde's
    /// error: `missing field` for an object, `invalid length` for an array
    /// of struct `strukt`'s `fields` fields.
    pub fn require(&self, i: usize, name: &str, strukt: &str, fields: usize) -> Result<()> {
        if self.has(i) {
            return Ok(());
        }
        Err(match self.shape {
            Shape::Object => Error(format!("missing field `{name}`")),
            Shape::Array(_) => Error(format!(
                "invalid length {i}, expected struct {strukt} with {fields} elements"
            )),
        })
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            depth: DEPTH,
        }
    }

    // ---- positions and errors ------------------------------------------------

    /// serde_json's position of the byte before `pos` (the last one read):
    /// line and column, both from 1 (column 0 at a line's start).
    fn position(&self, pos: usize) -> (usize, usize) {
        let head = self.bytes.get(..pos).unwrap_or(self.bytes);
        let line = 1 + head.iter().filter(|&&b| b == b'\n').count();
        let column = match head.iter().rposition(|&b| b == b'\n') {
            Some(nl) => pos - nl - 1,
            None => pos,
        };
        (line, column)
    }

    /// An error at the last byte read.
    fn error(&self, msg: &str) -> Error {
        let (line, column) = self.position(self.pos);
        Error(format!("{msg} at line {line} column {column}"))
    }

    /// An error at the next byte (the one peeked).
    fn peek_error(&self, msg: &str) -> Error {
        let (line, column) = self.position((self.pos + 1).min(self.bytes.len()));
        Error(format!("{msg} at line {line} column {column}"))
    }

    // ---- bytes ---------------------------------------------------------------

    fn peek_byte(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next_byte(&mut self) -> Option<u8> {
        let b = self.peek_byte()?;
        self.pos += 1;
        Some(b)
    }

    fn eat(&mut self) {
        self.pos += 1;
    }

    /// Skips whitespace; the next byte, not consumed.
    fn ws(&mut self) -> Option<u8> {
        while let Some(b) = self.peek_byte() {
            if !is_ws(b) {
                return Some(b);
            }
            self.eat();
        }
        None
    }

    fn ident(&mut self, rest: &[u8]) -> Result<()> {
        for want in rest {
            match self.next_byte() {
                Some(b) if b == *want => {}
                Some(_) => return Err(self.error("expected ident")),
                None => return Err(self.error("EOF while parsing a value")),
            }
        }
        Ok(())
    }

    /// The end of the document: only whitespace may follow.
    pub fn end(&mut self) -> Result<()> {
        match self.ws() {
            None => Ok(()),
            Some(_) => Err(self.peek_error("trailing characters")),
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth -= 1;
        if self.depth == 0 {
            return Err(self.peek_error("recursion limit exceeded"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth += 1;
    }

    // ---- strings -------------------------------------------------------------

    fn hex4(&mut self) -> Result<u16> {
        let mut n: u16 = 0;
        for _ in 0..4 {
            let b = self
                .next_byte()
                .ok_or_else(|| self.error("EOF while parsing a string"))?;
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Err(self.error("invalid escape")),
            };
            n = (n << 4) | u16::from(digit);
        }
        Ok(n)
    }

    /// The rest of a string whose `"` was read. `out` gets the decoded bytes
    /// (`None`: skipped, escapes checked for syntax only); `strict` refuses
    /// lone surrogates and invalid UTF-8, as reading a `String` does.
    fn string_body(&mut self, mut out: Option<&mut Vec<u8>>, strict: bool) -> Result<()> {
        loop {
            let b = self
                .next_byte()
                .ok_or_else(|| self.error("EOF while parsing a string"))?;
            match b {
                b'"' => break,
                b'\\' => {
                    let e = self
                        .next_byte()
                        .ok_or_else(|| self.error("EOF while parsing a string"))?;
                    let simple = match e {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            self.unicode_escape(out.as_deref_mut(), strict)?;
                            continue;
                        }
                        _ => return Err(self.error("invalid escape")),
                    };
                    if let Some(out) = out.as_deref_mut() {
                        out.push(simple);
                    }
                }
                0x00..=0x1f => {
                    return Err(self
                        .error("control character (\\u0000-\\u001F) found while parsing a string"))
                }
                b => {
                    if let Some(out) = out.as_deref_mut() {
                        out.push(b);
                    }
                }
            }
        }
        Ok(())
    }

    /// A `\u` escape whose `\u` was read (serde_json's
    /// `parse_unicode_escape`; `out` `None` is its `ignore_escape`).
    fn unicode_escape(&mut self, out: Option<&mut Vec<u8>>, strict: bool) -> Result<()> {
        let n = self.hex4()?;
        let Some(out) = out else {
            return Ok(());
        };
        if strict && (0xDC00..=0xDFFF).contains(&n) {
            return Err(self.error("lone leading surrogate in hex escape"));
        }
        if !(0xD800..=0xDBFF).contains(&n) {
            push_code_point(out, u32::from(n));
            return Ok(());
        }
        // A leading surrogate: a trailing one must follow.
        if self.peek_byte() != Some(b'\\') || self.bytes.get(self.pos + 1) != Some(&b'u') {
            if strict {
                // serde_json reads the byte (or two) before it complains.
                if self.peek_byte() == Some(b'\\') {
                    self.eat();
                }
                if self.next_byte().is_none() {
                    return Err(self.error("EOF while parsing a string"));
                }
                return Err(self.error("unexpected end of hex escape"));
            }
            push_code_point(out, u32::from(n));
            return Ok(());
        }
        self.pos += 2;
        let n2 = self.hex4()?;
        if !(0xDC00..=0xDFFF).contains(&n2) {
            if strict {
                return Err(self.error("lone leading surrogate in hex escape"));
            }
            push_code_point(out, u32::from(n));
            // serde_json goes on with the second escape as a new one.
            return self.unicode_escape_value(out, n2);
        }
        let c = (((u32::from(n) - 0xD800) << 10) | (u32::from(n2) - 0xDC00)) + 0x1_0000;
        push_code_point(out, c);
        Ok(())
    }

    /// The lax reading of a `\u` escape whose value is `n` (after a lone
    /// leading surrogate): as [`Reader::unicode_escape`] with it read.
    fn unicode_escape_value(&mut self, out: &mut Vec<u8>, n: u16) -> Result<()> {
        let mut n = n;
        loop {
            if !(0xD800..=0xDBFF).contains(&n) {
                push_code_point(out, u32::from(n));
                return Ok(());
            }
            if self.peek_byte() != Some(b'\\') || self.bytes.get(self.pos + 1) != Some(&b'u') {
                push_code_point(out, u32::from(n));
                return Ok(());
            }
            self.pos += 2;
            let n2 = self.hex4()?;
            if (0xDC00..=0xDFFF).contains(&n2) {
                let c = (((u32::from(n) - 0xD800) << 10) | (u32::from(n2) - 0xDC00)) + 0x1_0000;
                push_code_point(out, c);
                return Ok(());
            }
            push_code_point(out, u32::from(n));
            n = n2;
        }
    }

    /// A string whose `"` was read, as `String` reads it (escapes decoded,
    /// surrogates paired, UTF-8 checked).
    fn string_after_quote(&mut self) -> Result<String> {
        let mut out = Vec::new();
        self.string_body(Some(&mut out), true)?;
        String::from_utf8(out).map_err(|_| self.error("invalid unicode code point"))
    }

    /// A `String`.
    pub fn string(&mut self) -> Result<String> {
        match self.ws() {
            Some(b'"') => {
                self.eat();
                self.string_after_quote()
            }
            _ => Err(self.invalid_type("a string")),
        }
    }

    // ---- numbers -------------------------------------------------------------

    /// An integer's digits (the first one not read yet) as serde_json's
    /// `parse_integer` reads them; `positive` unless a `-` was read.
    fn number(&mut self, positive: bool) -> Result<Number> {
        let first = self
            .next_byte()
            .ok_or_else(|| self.error("EOF while parsing a value"))?;
        let significand = match first {
            b'0' => {
                if matches!(self.peek_byte(), Some(b'0'..=b'9')) {
                    return Err(self.peek_error("invalid number"));
                }
                0
            }
            c @ b'1'..=b'9' => {
                let mut significand = u64::from(c - b'0');
                while let Some(c @ b'0'..=b'9') = self.peek_byte() {
                    let digit = u64::from(c - b'0');
                    match significand
                        .checked_mul(10)
                        .and_then(|s| s.checked_add(digit))
                    {
                        Some(s) => {
                            self.eat();
                            significand = s;
                        }
                        None => {
                            // serde_json's `parse_long_integer`.
                            let mut exponent = 0i32;
                            while let Some(b'0'..=b'9') = self.peek_byte() {
                                self.eat();
                                exponent = exponent.saturating_add(1);
                            }
                            return match self.peek_byte() {
                                Some(b'.') => self.decimal(positive, significand, exponent),
                                Some(b'e' | b'E') => self.exponent(positive, significand, exponent),
                                _ => self.f64_from_parts(positive, significand, exponent),
                            }
                            .map(Number::Float);
                        }
                    }
                }
                significand
            }
            _ => return Err(self.error("invalid number")),
        };
        Ok(match self.peek_byte() {
            Some(b'.') => Number::Float(self.decimal(positive, significand, 0)?),
            Some(b'e' | b'E') => Number::Float(self.exponent(positive, significand, 0)?),
            _ if positive => Number::PosInt(significand),
            _ => {
                #[allow(clippy::cast_possible_wrap)]
                let neg = (significand as i64).wrapping_neg();
                if neg >= 0 {
                    #[allow(clippy::cast_precision_loss)]
                    Number::Float(-(significand as f64))
                } else {
                    Number::NegInt(neg)
                }
            }
        })
    }

    /// serde_json's `parse_decimal` (the `.` not read yet).
    fn decimal(&mut self, positive: bool, mut significand: u64, before: i32) -> Result<f64> {
        self.eat();
        let mut after = 0i32;
        while let Some(c @ b'0'..=b'9') = self.peek_byte() {
            let digit = u64::from(c - b'0');
            match significand
                .checked_mul(10)
                .and_then(|s| s.checked_add(digit))
            {
                Some(s) => {
                    self.eat();
                    significand = s;
                    after -= 1;
                }
                None => {
                    // `parse_decimal_overflow`: further digits are ignored.
                    while let Some(b'0'..=b'9') = self.peek_byte() {
                        self.eat();
                    }
                    let exponent = before.saturating_add(after);
                    return match self.peek_byte() {
                        Some(b'e' | b'E') => self.exponent(positive, significand, exponent),
                        _ => self.f64_from_parts(positive, significand, exponent),
                    };
                }
            }
        }
        if after == 0 {
            return Err(match self.peek_byte() {
                Some(_) => self.peek_error("invalid number"),
                None => self.peek_error("EOF while parsing a value"),
            });
        }
        let exponent = before.saturating_add(after);
        match self.peek_byte() {
            Some(b'e' | b'E') => self.exponent(positive, significand, exponent),
            _ => self.f64_from_parts(positive, significand, exponent),
        }
    }

    /// serde_json's `parse_exponent` (the `e` not read yet).
    fn exponent(&mut self, positive: bool, significand: u64, start: i32) -> Result<f64> {
        self.eat();
        let positive_exp = match self.peek_byte() {
            Some(b'+') => {
                self.eat();
                true
            }
            Some(b'-') => {
                self.eat();
                false
            }
            _ => true,
        };
        let mut exp = match self.next_byte() {
            Some(c @ b'0'..=b'9') => i32::from(c - b'0'),
            Some(_) => return Err(self.error("invalid number")),
            None => return Err(self.error("EOF while parsing a value")),
        };
        while let Some(c @ b'0'..=b'9') = self.peek_byte() {
            self.eat();
            let digit = i32::from(c - b'0');
            match exp.checked_mul(10).and_then(|e| e.checked_add(digit)) {
                Some(e) => exp = e,
                None => {
                    // `parse_exponent_overflow`.
                    if significand != 0 && positive_exp {
                        return Err(self.error("number out of range"));
                    }
                    while let Some(b'0'..=b'9') = self.peek_byte() {
                        self.eat();
                    }
                    return Ok(if positive { 0.0 } else { -0.0 });
                }
            }
        }
        let exponent = if positive_exp {
            start.saturating_add(exp)
        } else {
            start.saturating_sub(exp)
        };
        self.f64_from_parts(positive, significand, exponent)
    }

    /// serde_json's `f64_from_parts` (without `float_roundtrip`).
    fn f64_from_parts(
        &mut self,
        positive: bool,
        significand: u64,
        mut exponent: i32,
    ) -> Result<f64> {
        #[allow(clippy::cast_precision_loss)]
        let mut f = significand as f64;
        loop {
            match POW10.get(exponent.unsigned_abs() as usize) {
                Some(&pow) => {
                    if exponent >= 0 {
                        f *= pow;
                        if f.is_infinite() {
                            return Err(self.error("number out of range"));
                        }
                    } else {
                        f /= pow;
                    }
                    break;
                }
                None => {
                    if f == 0.0 {
                        break;
                    }
                    if exponent >= 0 {
                        return Err(self.error("number out of range"));
                    }
                    f /= 1e308;
                    exponent += 308;
                }
            }
        }
        Ok(if positive { f } else { -f })
    }

    /// A number, as `deserialize_any` reads it.
    fn any_number(&mut self) -> Result<Number> {
        if self.peek_byte() == Some(b'-') {
            self.eat();
            self.number(false)
        } else {
            self.number(true)
        }
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        match self.ws() {
            Some(b'-' | b'0'..=b'9') => {}
            _ => return Err(self.invalid_type("u64")),
        }
        let start = self.pos;
        match self.any_number()? {
            Number::PosInt(n) => Ok(n),
            Number::NegInt(n) => {
                Err(self.error(&format!("invalid value: integer `{n}`, expected u64")))
            }
            Number::Float(_) => Err(self.error(&format!(
                "invalid type: floating point `{}`, expected u64",
                self.text_since(start)
            ))),
        }
    }

    /// The document's text from `start` to here (a number's literal, for a
    /// message: written as it came, so that no float formatter is needed).
    fn text_since(&self, start: usize) -> String {
        String::from_utf8_lossy(self.bytes.get(start..self.pos).unwrap_or_default()).into_owned()
    }

    // ---- what a value is, for error messages ---------------------------------

    /// serde_json's `peek_invalid_type`: `invalid type: <what comes>,
    /// expected <exp>`, reading what comes.
    fn invalid_type(&mut self, exp: &str) -> Error {
        let what = match self.ws() {
            Some(b'n') => {
                self.eat();
                if let Err(e) = self.ident(b"ull") {
                    return e;
                }
                "null".to_string()
            }
            Some(b't') => {
                self.eat();
                if let Err(e) = self.ident(b"rue") {
                    return e;
                }
                "boolean `true`".to_string()
            }
            Some(b'f') => {
                self.eat();
                if let Err(e) = self.ident(b"alse") {
                    return e;
                }
                "boolean `false`".to_string()
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                match self.any_number() {
                    Ok(Number::PosInt(n)) => format!("integer `{n}`"),
                    Ok(Number::NegInt(n)) => format!("integer `{n}`"),
                    Ok(Number::Float(_)) => format!("floating point `{}`", self.text_since(start)),
                    Err(e) => return e,
                }
            }
            Some(b'"') => {
                self.eat();
                let mut out = Vec::new();
                if let Err(e) = self.string_body(Some(&mut out), false) {
                    return e;
                }
                format!("string {:?}", String::from_utf8_lossy(&out))
            }
            Some(b'[') => "sequence".to_string(),
            Some(b'{') => "map".to_string(),
            Some(_) => return self.peek_error("expected value"),
            None => return self.peek_error("EOF while parsing a value"),
        };
        self.error(&format!("invalid type: {what}, expected {exp}"))
    }

    // ---- skipping --------------------------------------------------------------

    /// Skips a value, as serde_json's `ignore_value` does (what an
    /// `IgnoredAny` or an unknown field reads): no depth limit, strings
    /// checked for syntax only.
    pub fn skip(&mut self) -> Result<()> {
        let mut frames: Vec<u8> = Vec::new();
        loop {
            // A value.
            let opened = match self.ws() {
                Some(b'n') => {
                    self.eat();
                    self.ident(b"ull")?;
                    None
                }
                Some(b't') => {
                    self.eat();
                    self.ident(b"rue")?;
                    None
                }
                Some(b'f') => {
                    self.eat();
                    self.ident(b"alse")?;
                    None
                }
                Some(b'-') => {
                    self.eat();
                    self.skip_integer()?;
                    None
                }
                Some(b'0'..=b'9') => {
                    self.skip_integer()?;
                    None
                }
                Some(b'"') => {
                    self.eat();
                    self.string_body(None, false)?;
                    None
                }
                Some(frame @ (b'[' | b'{')) => {
                    self.eat();
                    Some(frame)
                }
                Some(_) => return Err(self.peek_error("expected value")),
                None => return Err(self.peek_error("EOF while parsing a value")),
            };
            let (mut accept_comma, mut frame) = match opened {
                Some(frame) => (false, frame),
                None => match frames.pop() {
                    Some(frame) => (true, frame),
                    None => return Ok(()),
                },
            };
            // What follows: a comma, or the end of one or more frames.
            loop {
                match self.ws() {
                    Some(b',') if accept_comma => {
                        self.eat();
                        break;
                    }
                    Some(b']') if frame == b'[' => {}
                    Some(b'}') if frame == b'{' => {}
                    Some(_) => {
                        if accept_comma {
                            return Err(self.peek_error(if frame == b'[' {
                                "expected `,` or `]`"
                            } else {
                                "expected `,` or `}`"
                            }));
                        }
                        break;
                    }
                    None => {
                        return Err(self.peek_error(if frame == b'[' {
                            "EOF while parsing a list"
                        } else {
                            "EOF while parsing an object"
                        }))
                    }
                }
                self.eat();
                frame = match frames.pop() {
                    Some(frame) => frame,
                    None => return Ok(()),
                };
                accept_comma = true;
            }
            if frame == b'{' {
                match self.ws() {
                    Some(b'"') => self.eat(),
                    Some(_) => return Err(self.peek_error("key must be a string")),
                    None => return Err(self.peek_error("EOF while parsing an object")),
                }
                self.string_body(None, false)?;
                match self.ws() {
                    Some(b':') => self.eat(),
                    Some(_) => return Err(self.peek_error("expected `:`")),
                    None => return Err(self.peek_error("EOF while parsing an object")),
                }
            }
            frames.push(frame);
        }
    }

    fn skip_integer(&mut self) -> Result<()> {
        match self.next_byte() {
            Some(b'0') => {
                if matches!(self.peek_byte(), Some(b'0'..=b'9')) {
                    return Err(self.peek_error("invalid number"));
                }
            }
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.peek_byte() {
                    self.eat();
                }
            }
            Some(_) => return Err(self.error("invalid number")),
            None => return Err(self.error("EOF while parsing a value")),
        }
        if self.peek_byte() == Some(b'.') {
            self.eat();
            let mut digit = false;
            while let Some(b'0'..=b'9') = self.peek_byte() {
                self.eat();
                digit = true;
            }
            if !digit {
                return Err(self.peek_error("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek_byte() {
            self.eat();
            if let Some(b'+' | b'-') = self.peek_byte() {
                self.eat();
            }
            match self.next_byte() {
                Some(b'0'..=b'9') => {}
                Some(_) => return Err(self.error("invalid number")),
                None => return Err(self.error("EOF while parsing a value")),
            }
            while let Some(b'0'..=b'9') = self.peek_byte() {
                self.eat();
            }
        }
        Ok(())
    }

    // ---- options, sequences, structures --------------------------------------

    /// `Option<T>`: `None` for `null` (read), else `Some` of `some`.
    pub fn option<T>(&mut self, some: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        if self.ws() == Some(b'n') {
            self.eat();
            self.ident(b"ull")?;
            return Ok(None);
        }
        some(self).map(Some)
    }

    /// Whether the next value is `null` (not read).
    pub fn peek_null(&mut self) -> bool {
        self.ws() == Some(b'n')
    }

    /// `Vec<T>`: a JSON array, `element` reading each element.
    pub fn seq(&mut self, mut element: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.seq_dyn(&mut element)
    }

    fn seq_dyn(&mut self, element: &mut dyn FnMut(&mut Self) -> Result<()>) -> Result<()> {
        if self.ws() != Some(b'[') {
            return Err(self.invalid_type("a sequence"));
        }
        self.enter()?;
        self.eat();
        let mut first = true;
        let result = loop {
            match self.next_element(&mut first) {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
            if let Err(e) = element(self) {
                break Err(e);
            }
        };
        self.leave();
        result?;
        self.end_seq()
    }

    /// serde_json's `SeqAccess::next_element`: whether an element comes.
    fn next_element(&mut self, first: &mut bool) -> Result<bool> {
        let peek = match self.ws() {
            Some(b']') => return Ok(false),
            Some(b',') if !*first => {
                self.eat();
                self.ws()
            }
            Some(b) => {
                if *first {
                    *first = false;
                    Some(b)
                } else {
                    return Err(self.peek_error("expected `,` or `]`"));
                }
            }
            None => return Err(self.peek_error("EOF while parsing a list")),
        };
        match peek {
            Some(b']') => Err(self.peek_error("trailing comma")),
            Some(_) => Ok(true),
            None => Err(self.peek_error("EOF while parsing a value")),
        }
    }

    fn end_seq(&mut self) -> Result<()> {
        match self.ws() {
            Some(b']') => {
                self.eat();
                Ok(())
            }
            Some(b',') => {
                self.eat();
                match self.ws() {
                    Some(b']') => Err(self.peek_error("trailing comma")),
                    _ => Err(self.peek_error("trailing characters")),
                }
            }
            Some(_) => Err(self.peek_error("trailing characters")),
            None => Err(self.peek_error("EOF while parsing a list")),
        }
    }

    /// serde_json's `MapAccess::next_key`: the next key of an object (its
    /// `"` read), or `None` at its end.
    fn next_key(&mut self, first: &mut bool) -> Result<bool> {
        let peek = match self.ws() {
            Some(b'}') => return Ok(false),
            Some(b',') if !*first => {
                self.eat();
                self.ws()
            }
            Some(b) => {
                if *first {
                    *first = false;
                    Some(b)
                } else {
                    return Err(self.peek_error("expected `,` or `}`"));
                }
            }
            None => return Err(self.peek_error("EOF while parsing an object")),
        };
        match peek {
            Some(b'"') => {
                self.eat();
                Ok(true)
            }
            Some(b'}') => Err(self.peek_error("trailing comma")),
            Some(_) => Err(self.peek_error("key must be a string")),
            None => Err(self.peek_error("EOF while parsing a value")),
        }
    }

    fn colon(&mut self) -> Result<()> {
        match self.ws() {
            Some(b':') => {
                self.eat();
                Ok(())
            }
            Some(_) => Err(self.peek_error("expected `:`")),
            None => Err(self.peek_error("EOF while parsing an object")),
        }
    }

    fn end_map(&mut self) -> Result<()> {
        match self.ws() {
            Some(b'}') => {
                self.eat();
                Ok(())
            }
            Some(b',') => Err(self.peek_error("trailing comma")),
            Some(_) => Err(self.peek_error("trailing characters")),
            None => Err(self.peek_error("EOF while parsing an object")),
        }
    }

    /// A derived struct: a JSON object (`fields[i]` lists field `i`'s name
    /// and aliases; `deny_unknown` as `#[serde(deny_unknown_fields)]`), or
    /// an array of its fields in order. `field` reads the value of field
    /// `i`, in document order. A field given twice is refused.
    pub fn structure(
        &mut self,
        name: &str,
        fields: &[&[&str]],
        deny_unknown: bool,
        mut field: impl FnMut(&mut Self, usize) -> Result<()>,
    ) -> Result<Seen> {
        self.structure_dyn(name, fields, deny_unknown, &mut field)
    }

    fn structure_dyn(
        &mut self,
        name: &str,
        fields: &[&[&str]],
        deny_unknown: bool,
        field: &mut dyn FnMut(&mut Self, usize) -> Result<()>,
    ) -> Result<Seen> {
        let open = self.ws();
        if !matches!(open, Some(b'{' | b'[')) {
            return Err(self.invalid_type(&format!("struct {name}")));
        }
        self.enter()?;
        self.eat();
        let result = if open == Some(b'[') {
            let mut first = true;
            let mut seen = Seen {
                mask: 0,
                shape: Shape::Array(0),
            };
            let mut result = Ok(());
            for i in 0..fields.len() {
                match self.next_element(&mut first) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
                if let Err(e) = field(self, i) {
                    result = Err(e);
                    break;
                }
                seen.mask |= 1 << i;
                seen.shape = Shape::Array(i + 1);
            }
            result.map(|()| seen)
        } else {
            self.fields(fields, deny_unknown, field)
        };
        self.leave();
        let seen = result?;
        match seen.shape {
            Shape::Array(_) => self.end_seq()?,
            Shape::Object => self.end_map()?,
        }
        Ok(seen)
    }

    fn fields(
        &mut self,
        fields: &[&[&str]],
        deny_unknown: bool,
        field: &mut dyn FnMut(&mut Self, usize) -> Result<()>,
    ) -> Result<Seen> {
        let mut seen = Seen {
            mask: 0,
            shape: Shape::Object,
        };
        let mut first = true;
        while self.next_key(&mut first)? {
            let key = self.string_after_quote()?;
            let index = fields
                .iter()
                .position(|names| names.contains(&key.as_str()));
            match index {
                Some(i) if seen.has(i) => {
                    let canonical = fields
                        .get(i)
                        .and_then(|n| n.first())
                        .copied()
                        .unwrap_or_default();
                    return Err(self.error(&format!("duplicate field `{canonical}`")));
                }
                Some(i) => {
                    self.colon()?;
                    field(self, i)?;
                    seen.mask |= 1 << i;
                }
                None if deny_unknown => {
                    return Err(self.error(&unknown_field(&key, fields)));
                }
                None => {
                    self.colon()?;
                    self.skip()?;
                }
            }
        }
        Ok(seen)
    }

    /// A unit-variant enum (`FailureMode`): `"<variant>"`, or
    /// `{"<variant>": null}`; the index into `variants`.
    pub fn unit_variant(&mut self, variants: &[&str]) -> Result<usize> {
        let find = |this: &Self, v: &str| {
            variants
                .iter()
                .position(|x| *x == v)
                .ok_or_else(|| this.error(&unknown_variant(v, variants)))
        };
        match self.ws() {
            Some(b'"') => {
                self.eat();
                let v = self.string_after_quote()?;
                find(self, &v)
            }
            Some(b'{') => {
                self.enter()?;
                self.eat();
                let result = (|| {
                    let v = self.variant_identifier()?;
                    let i = find(self, &v)?;
                    self.colon()?;
                    if self.ws() == Some(b'n') {
                        self.eat();
                        self.ident(b"ull")?;
                    } else {
                        return Err(self.invalid_type("unit"));
                    }
                    Ok(i)
                })();
                self.leave();
                let i = result?;
                match self.ws() {
                    Some(b'}') => {
                        self.eat();
                        Ok(i)
                    }
                    Some(_) => Err(self.error("expected value")),
                    None => Err(self.error("EOF while parsing an object")),
                }
            }
            Some(_) => Err(self.peek_error("expected value")),
            None => Err(self.peek_error("EOF while parsing a value")),
        }
    }

    /// A variant's name inside `{…}`, as serde_json's `deserialize_str`
    /// reads one.
    fn variant_identifier(&mut self) -> Result<String> {
        match self.ws() {
            Some(b'"') => {
                self.eat();
                self.string_after_quote()
            }
            Some(b'}') => Err(self.peek_error("expected value")),
            Some(_) => Err(self.peek_error("key must be a string")),
            None => Err(self.peek_error("EOF while parsing an object")),
        }
    }

    // ---- whole values --------------------------------------------------------

    /// A `serde_json::Value`, checked as reading one checks it (strings
    /// decoded, numbers in range, the depth limit); `visit` sees each
    /// object member of this value's top level (key, reader positioned at
    /// its value) and reads it, or returns `false` to have it checked and
    /// dropped.
    pub fn value(&mut self) -> Result<()> {
        self.value_with(&mut |_, _| Ok(false))
    }

    /// [`Reader::value`], handing each member of a top-level object to
    /// `member` first: it reads the value and returns `true`, or returns
    /// `false` to have it read here.
    pub fn value_with(
        &mut self,
        member: &mut dyn FnMut(&mut Self, &str) -> Result<bool>,
    ) -> Result<()> {
        match self.ws() {
            Some(b'n') => {
                self.eat();
                self.ident(b"ull")
            }
            Some(b't') => {
                self.eat();
                self.ident(b"rue")
            }
            Some(b'f') => {
                self.eat();
                self.ident(b"alse")
            }
            Some(b'-' | b'0'..=b'9') => self.any_number().map(|_| ()),
            Some(b'"') => {
                self.eat();
                self.string_after_quote().map(|_| ())
            }
            Some(b'[') => {
                self.enter()?;
                self.eat();
                let mut first = true;
                let result = (|| {
                    while self.next_element(&mut first)? {
                        self.value()?;
                    }
                    Ok(())
                })();
                self.leave();
                result?;
                self.end_seq()
            }
            Some(b'{') => {
                self.enter()?;
                self.eat();
                let mut first = true;
                let result = (|| {
                    while self.next_key(&mut first)? {
                        let key = self.string_after_quote()?;
                        self.colon()?;
                        if !member(self, &key)? {
                            self.value()?;
                        }
                    }
                    Ok(())
                })();
                self.leave();
                result?;
                self.end_map()
            }
            Some(_) => Err(self.peek_error("expected value")),
            None => Err(self.peek_error("EOF while parsing a value")),
        }
    }

    /// A `serde_json::Value`, read as `serde_json::from_slice` reads one
    /// (duplicate keys: the last wins).
    pub fn json_value(&mut self) -> Result<serde_json::Value> {
        use serde_json::Value;
        Ok(match self.ws() {
            Some(b'n') => {
                self.eat();
                self.ident(b"ull")?;
                Value::Null
            }
            Some(b't') => {
                self.eat();
                self.ident(b"rue")?;
                Value::Bool(true)
            }
            Some(b'f') => {
                self.eat();
                self.ident(b"alse")?;
                Value::Bool(false)
            }
            Some(b'-' | b'0'..=b'9') => match self.any_number()? {
                Number::PosInt(n) => Value::Number(n.into()),
                Number::NegInt(n) => Value::Number(n.into()),
                Number::Float(f) => {
                    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
                }
            },
            Some(b'"') => {
                self.eat();
                Value::String(self.string_after_quote()?)
            }
            Some(b'[') => {
                self.enter()?;
                self.eat();
                let mut first = true;
                let mut items = Vec::new();
                let result = (|| {
                    while self.next_element(&mut first)? {
                        items.push(self.json_value()?);
                    }
                    Ok(())
                })();
                self.leave();
                result?;
                self.end_seq()?;
                Value::Array(items)
            }
            Some(b'{') => {
                self.enter()?;
                self.eat();
                let mut first = true;
                let mut map = serde_json::Map::new();
                let result = (|| {
                    while self.next_key(&mut first)? {
                        let key = self.string_after_quote()?;
                        self.colon()?;
                        let value = self.json_value()?;
                        map.insert(key, value);
                    }
                    Ok(())
                })();
                self.leave();
                result?;
                self.end_map()?;
                Value::Object(map)
            }
            Some(_) => return Err(self.peek_error("expected value")),
            None => return Err(self.peek_error("EOF while parsing a value")),
        })
    }

    /// A `String` where a `serde_json::Value` is read: `Some` for a string,
    /// `None` (the value checked and dropped) for anything else.
    pub fn value_string(&mut self) -> Result<Option<String>> {
        if self.ws() == Some(b'"') {
            self.string().map(Some)
        } else {
            self.value().map(|()| None)
        }
    }

    /// Whether the next value is an object (not read).
    pub fn peek_object(&mut self) -> bool {
        self.ws() == Some(b'{')
    }
}

/// serde's `unknown field` message.
fn unknown_field(key: &str, fields: &[&[&str]]) -> String {
    let names: Vec<&str> = fields.iter().filter_map(|n| n.first().copied()).collect();
    format!("unknown field `{key}`, {}", one_of(&names))
}

/// serde's `unknown variant` message.
fn unknown_variant(v: &str, variants: &[&str]) -> String {
    format!("unknown variant `{v}`, {}", one_of(variants))
}

/// serde's `OneOf`: `expected `a``, `expected `a` or `b``, `expected one of
/// `a`, `b`, `c``, `there are no fields`.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => "there are no fields".to_string(),
        [a] => format!("expected `{a}`"),
        [a, b] => format!("expected `{a}` or `{b}`"),
        all => {
            let mut out = String::from("expected one of ");
            for (i, n) in all.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "`{n}`");
            }
            out
        }
    }
}

fn push_code_point(out: &mut Vec<u8>, c: u32) {
    match char::from_u32(c) {
        Some(ch) => out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes()),
        // A lone surrogate (lax reading only, for a message): WTF-8, as
        // serde_json writes it.
        None => out.extend_from_slice(&[
            0xE0 | ((c >> 12) & 0x0F) as u8,
            0x80 | ((c >> 6) & 0x3F) as u8,
            0x80 | (c & 0x3F) as u8,
        ]),
    }
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it: `"` and
/// `\`, `\b \f \n \r \t`, other control characters as `\u00XX`; nothing
/// else.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            out.push_str("\\u00");
            for nibble in [b >> 4, b & 0xf] {
                out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
            }
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// serde_json's table of powers of ten, `1e0` to `1e308`.
#[rustfmt::skip]
static POW10: [f64; 309] = [
    1e000, 1e001, 1e002, 1e003, 1e004, 1e005, 1e006, 1e007, 1e008, 1e009,
    1e010, 1e011, 1e012, 1e013, 1e014, 1e015, 1e016, 1e017, 1e018, 1e019,
    1e020, 1e021, 1e022, 1e023, 1e024, 1e025, 1e026, 1e027, 1e028, 1e029,
    1e030, 1e031, 1e032, 1e033, 1e034, 1e035, 1e036, 1e037, 1e038, 1e039,
    1e040, 1e041, 1e042, 1e043, 1e044, 1e045, 1e046, 1e047, 1e048, 1e049,
    1e050, 1e051, 1e052, 1e053, 1e054, 1e055, 1e056, 1e057, 1e058, 1e059,
    1e060, 1e061, 1e062, 1e063, 1e064, 1e065, 1e066, 1e067, 1e068, 1e069,
    1e070, 1e071, 1e072, 1e073, 1e074, 1e075, 1e076, 1e077, 1e078, 1e079,
    1e080, 1e081, 1e082, 1e083, 1e084, 1e085, 1e086, 1e087, 1e088, 1e089,
    1e090, 1e091, 1e092, 1e093, 1e094, 1e095, 1e096, 1e097, 1e098, 1e099,
    1e100, 1e101, 1e102, 1e103, 1e104, 1e105, 1e106, 1e107, 1e108, 1e109,
    1e110, 1e111, 1e112, 1e113, 1e114, 1e115, 1e116, 1e117, 1e118, 1e119,
    1e120, 1e121, 1e122, 1e123, 1e124, 1e125, 1e126, 1e127, 1e128, 1e129,
    1e130, 1e131, 1e132, 1e133, 1e134, 1e135, 1e136, 1e137, 1e138, 1e139,
    1e140, 1e141, 1e142, 1e143, 1e144, 1e145, 1e146, 1e147, 1e148, 1e149,
    1e150, 1e151, 1e152, 1e153, 1e154, 1e155, 1e156, 1e157, 1e158, 1e159,
    1e160, 1e161, 1e162, 1e163, 1e164, 1e165, 1e166, 1e167, 1e168, 1e169,
    1e170, 1e171, 1e172, 1e173, 1e174, 1e175, 1e176, 1e177, 1e178, 1e179,
    1e180, 1e181, 1e182, 1e183, 1e184, 1e185, 1e186, 1e187, 1e188, 1e189,
    1e190, 1e191, 1e192, 1e193, 1e194, 1e195, 1e196, 1e197, 1e198, 1e199,
    1e200, 1e201, 1e202, 1e203, 1e204, 1e205, 1e206, 1e207, 1e208, 1e209,
    1e210, 1e211, 1e212, 1e213, 1e214, 1e215, 1e216, 1e217, 1e218, 1e219,
    1e220, 1e221, 1e222, 1e223, 1e224, 1e225, 1e226, 1e227, 1e228, 1e229,
    1e230, 1e231, 1e232, 1e233, 1e234, 1e235, 1e236, 1e237, 1e238, 1e239,
    1e240, 1e241, 1e242, 1e243, 1e244, 1e245, 1e246, 1e247, 1e248, 1e249,
    1e250, 1e251, 1e252, 1e253, 1e254, 1e255, 1e256, 1e257, 1e258, 1e259,
    1e260, 1e261, 1e262, 1e263, 1e264, 1e265, 1e266, 1e267, 1e268, 1e269,
    1e270, 1e271, 1e272, 1e273, 1e274, 1e275, 1e276, 1e277, 1e278, 1e279,
    1e280, 1e281, 1e282, 1e283, 1e284, 1e285, 1e286, 1e287, 1e288, 1e289,
    1e290, 1e291, 1e292, 1e293, 1e294, 1e295, 1e296, 1e297, 1e298, 1e299,
    1e300, 1e301, 1e302, 1e303, 1e304, 1e305, 1e306, 1e307, 1e308,
];
