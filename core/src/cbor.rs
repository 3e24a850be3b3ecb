//! A small CBOR reader and writer for the two CBOR documents Paygress
//! handles: a `cashuB` token (read) and a NUT-18 payment request (written),
//! so that the proxy-wasm filter carries no ciborium (and no serde
//! monomorphisations) in its `.wasm`.
//!
//! The reader accepts and refuses what `ciborium::de::from_reader` does for
//! the types read through it (checked against ciborium in the tests):
//! tags are skipped before a field's value, bignum tags are integers,
//! strings may come in (nested) indefinite-length segments, each valid
//! UTF-8, a byte string may also come as an array of integers, map keys are
//! text or byte strings of at most 4096 bytes, anything after the document
//! is ignored, and nesting is limited to 256 levels. The writer writes what
//! ciborium's serializer writes: shortest heads, definite lengths.

/// Why a document was refused (ciborium's errors all read as one:
/// the token is not valid CBOR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error;

pub type Result<T> = core::result::Result<T, Error>;

/// ciborium's scratch buffer: the longest key, and the longest byte string
/// read whole.
const SCRATCH: usize = 4096;

/// ciborium's recursion limit.
const RECURSION: usize = 256;

const TAG_BIGPOS: u64 = 2;
const TAG_BIGNEG: u64 = 3;
const SIMPLE_NULL: u8 = 22;
const SIMPLE_UNDEFINED: u8 = 23;

/// A data item's head, as ciborium-ll reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Header {
    Positive(u64),
    Negative(u64),
    Float,
    Simple(u8),
    Tag(u64),
    Break,
    Bytes(Option<usize>),
    Text(Option<usize>),
    Array(Option<usize>),
    Map(Option<usize>),
}

/// A pull reader over one CBOR document.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    recurse: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            recurse: RECURSION,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Error)?;
        let out = self.bytes.get(self.pos..end).ok_or(Error)?;
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self.bytes.get(self.pos).ok_or(Error)?;
        self.pos += 1;
        Ok(b)
    }

    /// The next head.
    fn pull(&mut self) -> Result<Header> {
        let initial = self.byte()?;
        let major = initial >> 5;
        let minor = initial & 0x1f;
        // `None`: indefinite (31).
        let arg: Option<u64> = match minor {
            0..=23 => Some(u64::from(minor)),
            24 => Some(u64::from(self.byte()?)),
            25 => Some(u64::from(u16::from_be_bytes(array(self.take(2)?)?))),
            26 => Some(u64::from(u32::from_be_bytes(array(self.take(4)?)?))),
            27 => Some(u64::from_be_bytes(array(self.take(8)?)?)),
            31 => None,
            _ => return Err(Error),
        };
        let len = |arg: Option<u64>| -> Result<Option<usize>> {
            arg.map(|n| usize::try_from(n).map_err(|_| Error))
                .transpose()
        };
        Ok(match major {
            0 => Header::Positive(arg.ok_or(Error)?),
            1 => Header::Negative(arg.ok_or(Error)?),
            2 => Header::Bytes(len(arg)?),
            3 => Header::Text(len(arg)?),
            4 => Header::Array(len(arg)?),
            5 => Header::Map(len(arg)?),
            6 => Header::Tag(arg.ok_or(Error)?),
            _ => match minor {
                31 => Header::Break,
                0..=23 => Header::Simple(minor),
                24 => Header::Simple(u8::try_from(arg.unwrap_or(0)).map_err(|_| Error)?),
                _ => Header::Float,
            },
        })
    }

    /// The next head, not consumed.
    fn peek(&mut self) -> Result<Header> {
        let at = self.pos;
        let header = self.pull();
        self.pos = at;
        header
    }

    /// The next head after any tags.
    fn pull_untagged(&mut self) -> Result<Header> {
        loop {
            match self.pull()? {
                Header::Tag(_) => continue,
                header => return Ok(header),
            }
        }
    }

    fn nest<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.recurse == 0 {
            return Err(Error);
        }
        self.recurse -= 1;
        let result = f(self);
        self.recurse += 1;
        result
    }

    /// The segments of a byte or text string whose head was read, as
    /// ciborium-ll's `Segments` reads them (indefinite strings may nest);
    /// `segment` gets each one.
    fn segments(
        &mut self,
        text: bool,
        len: Option<usize>,
        segment: &mut dyn FnMut(&'a [u8]) -> Result<()>,
    ) -> Result<()> {
        let Some(len) = len else {
            let mut nested = 1usize;
            loop {
                match self.pull()? {
                    Header::Break if nested == 1 => return Ok(()),
                    Header::Break => nested -= 1,
                    Header::Text(len) if text => match len {
                        None => nested += 1,
                        Some(n) => segment(self.take(n)?)?,
                    },
                    Header::Bytes(len) if !text => match len {
                        None => nested += 1,
                        Some(n) => segment(self.take(n)?)?,
                    },
                    _ => return Err(Error),
                }
            }
        };
        segment(self.take(len)?)
    }

    /// A text string whose head was read: every segment valid UTF-8.
    fn text_body(&mut self, len: Option<usize>, out: &mut String) -> Result<()> {
        self.segments(true, len, &mut |s| {
            out.push_str(core::str::from_utf8(s).map_err(|_| Error)?);
            Ok(())
        })
    }

    /// A byte string whose head was read.
    fn bytes_body(&mut self, len: Option<usize>, out: &mut Vec<u8>) -> Result<()> {
        self.segments(false, len, &mut |s| {
            out.extend_from_slice(s);
            Ok(())
        })
    }

    // ---- typed reads (ciborium's `deserialize_*`) ----------------------------

    /// A `String`.
    pub fn string(&mut self) -> Result<String> {
        match self.pull_untagged()? {
            Header::Text(len) => {
                let mut out = String::new();
                self.text_body(len, &mut out)?;
                Ok(out)
            }
            _ => Err(Error),
        }
    }

    /// ciborium's `integer`: an unsigned or negative integer, or a bignum
    /// of at most 16 bytes (tags before it skipped); `(negative, value)`.
    fn integer(&mut self) -> Result<(bool, u128)> {
        loop {
            let negative = match self.pull()? {
                Header::Positive(x) => return Ok((false, u128::from(x))),
                Header::Negative(x) => return Ok((true, u128::from(x))),
                Header::Tag(TAG_BIGPOS) => false,
                Header::Tag(TAG_BIGNEG) => true,
                Header::Tag(_) => continue,
                _ => return Err(Error),
            };
            let Header::Bytes(len) = self.pull()? else {
                return Err(Error);
            };
            let mut value: u128 = 0;
            let mut digits = 0usize;
            self.segments(false, len, &mut |s| {
                for &b in s {
                    if digits == 0 && b == 0 {
                        continue;
                    }
                    if digits == 16 {
                        return Err(Error);
                    }
                    value = (value << 8) | u128::from(b);
                    digits += 1;
                }
                Ok(())
            })?;
            return Ok((negative, value));
        }
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        match self.integer()? {
            (false, raw) => u64::try_from(raw).map_err(|_| Error),
            (true, _) => Err(Error),
        }
    }

    /// `Option<T>`: `None` for `null` or `undefined` (read), else `some`.
    pub fn option<T>(&mut self, some: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        match self.peek()? {
            Header::Simple(SIMPLE_NULL | SIMPLE_UNDEFINED) => {
                self.pull()?;
                Ok(None)
            }
            _ => some(self).map(Some),
        }
    }

    /// Bytes read as serde's `deserialize_bytes` (a byte string of at most
    /// 4096 bytes, or an array of integers 0-255).
    pub fn bytes(&mut self) -> Result<Vec<u8>> {
        match self.pull_untagged()? {
            Header::Bytes(Some(len)) if len <= SCRATCH => Ok(self.take(len)?.to_vec()),
            Header::Array(len) => self.nest(|me| {
                let mut out = Vec::new();
                me.elements(len, &mut |me| {
                    let b = me.u64()?;
                    out.push(u8::try_from(b).map_err(|_| Error)?);
                    Ok(())
                })?;
                Ok(out)
            }),
            _ => Err(Error),
        }
    }

    /// The elements of an array whose head was read.
    fn elements(
        &mut self,
        len: Option<usize>,
        element: &mut dyn FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        match len {
            Some(n) => {
                for _ in 0..n {
                    element(self)?;
                }
            }
            None => loop {
                if self.peek()? == Header::Break {
                    self.pull()?;
                    break;
                }
                element(self)?;
            },
        }
        Ok(())
    }

    /// `Vec<T>` of structs: an array, `element` reading each; or, as
    /// ciborium reads a sequence, an empty byte string.
    pub fn seq(&mut self, mut element: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.seq_dyn(&mut element)
    }

    fn seq_dyn(&mut self, element: &mut dyn FnMut(&mut Self) -> Result<()>) -> Result<()> {
        match self.pull_untagged()? {
            Header::Array(len) => self.nest(|me| me.elements(len, element)),
            Header::Bytes(len) => {
                let mut bytes = Vec::new();
                self.bytes_body(len, &mut bytes)?;
                // Each byte would be read as a struct: refused.
                if bytes.is_empty() {
                    Ok(())
                } else {
                    Err(Error)
                }
            }
            _ => Err(Error),
        }
    }

    /// A derived struct: a map whose keys are text or byte strings;
    /// `fields[i]` lists field `i`'s name and aliases. `field` reads field
    /// `i`'s value; a field given twice is refused; unknown fields are
    /// skipped. The bitmask of the fields given.
    pub fn structure(
        &mut self,
        fields: &[&[&str]],
        mut field: impl FnMut(&mut Self, usize) -> Result<()>,
    ) -> Result<u64> {
        self.structure_dyn(fields, &mut field)
    }

    fn structure_dyn(
        &mut self,
        fields: &[&[&str]],
        field: &mut dyn FnMut(&mut Self, usize) -> Result<()>,
    ) -> Result<u64> {
        let Header::Map(len) = self.pull_untagged()? else {
            return Err(Error);
        };
        self.nest(|me| {
            let mut seen = 0u64;
            let mut entry = |me: &mut Self| -> Result<()> {
                let key = me.key()?;
                match fields
                    .iter()
                    .position(|names| names.iter().any(|n| n.as_bytes() == key))
                {
                    Some(i) if seen & (1 << i) != 0 => Err(Error),
                    Some(i) => {
                        seen |= 1 << i;
                        field(me, i)
                    }
                    None => me.any(),
                }
            };
            match len {
                Some(n) => {
                    for _ in 0..n {
                        entry(me)?;
                    }
                }
                None => loop {
                    if me.peek()? == Header::Break {
                        me.pull()?;
                        break;
                    }
                    entry(me)?;
                },
            }
            Ok(seen)
        })
    }

    /// A map key, as serde's `deserialize_identifier` reads it.
    fn key(&mut self) -> Result<&'a [u8]> {
        match self.pull_untagged()? {
            Header::Text(Some(len)) if len <= SCRATCH => {
                let s = self.take(len)?;
                core::str::from_utf8(s).map_err(|_| Error)?;
                Ok(s)
            }
            Header::Bytes(Some(len)) if len <= SCRATCH => self.take(len),
            _ => Err(Error),
        }
    }

    /// Any data item, as ciborium's `deserialize_any` reads it into an
    /// `IgnoredAny` or a `ciborium::Value`.
    pub fn any(&mut self) -> Result<()> {
        match self.pull()? {
            Header::Positive(_) | Header::Negative(_) | Header::Float => Ok(()),
            Header::Simple(20..=23) => Ok(()),
            Header::Simple(_) | Header::Break => Err(Error),
            Header::Bytes(len) => {
                let mut sink = Vec::new();
                self.bytes_body(len, &mut sink)
            }
            Header::Text(len) => {
                let mut sink = String::new();
                self.text_body(len, &mut sink)
            }
            Header::Array(len) => self.nest(|me| me.elements(len, &mut Self::any)),
            Header::Map(len) => self.nest(|me| match len {
                Some(n) => {
                    for _ in 0..n {
                        me.any()?;
                        me.any()?;
                    }
                    Ok(())
                }
                None => loop {
                    if me.peek()? == Header::Break {
                        me.pull()?;
                        return Ok(());
                    }
                    me.any()?;
                    me.any()?;
                },
            }),
            Header::Tag(tag) => match self.peek()? {
                Header::Bytes(Some(len))
                    if (tag == TAG_BIGPOS || tag == TAG_BIGNEG) && len <= 16 =>
                {
                    self.pull()?;
                    let mut value: u128 = 0;
                    for &b in self.take(len)? {
                        value = (value << 8) | u128::from(b);
                    }
                    // A negative bignum must fit an i128.
                    if tag == TAG_BIGNEG && i128::try_from(value).is_err() {
                        return Err(Error);
                    }
                    Ok(())
                }
                _ => self.nest(Self::any),
            },
        }
    }
}

fn array<const N: usize>(bytes: &[u8]) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| Error)
}

// ---- writing ------------------------------------------------------------------

/// Appends a head of `major` type with argument `n`, in its shortest form.
pub fn write_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let major = major << 5;
    if n < 24 {
        out.push(major | n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.push(major | 24);
        out.push(n);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(major | 25);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(major | 26);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Appends an unsigned integer.
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    write_head(out, 0, n);
}

/// Appends a text string.
pub fn write_text(out: &mut Vec<u8>, s: &str) {
    write_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends the head of an array of `len` items.
pub fn write_array(out: &mut Vec<u8>, len: usize) {
    write_head(out, 4, len as u64);
}

/// Appends the head of a map of `len` pairs.
pub fn write_map(out: &mut Vec<u8>, len: usize) {
    write_head(out, 5, len as u64);
}
