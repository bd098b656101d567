//! Subscription filters: the attribute-only filter language of Cloud Pub/Sub.
//!
//! A subscription may carry a filter; only messages whose attributes satisfy
//! it are delivered, the rest are acknowledged on the subscriber's behalf.
//! This module parses the filter text once, when the subscription is
//! created, into a [`Filter`] and evaluates it against each message's
//! attributes. It is pure: no I/O, no broker state.
//!
//! The grammar is the service's
//! (<https://cloud.google.com/pubsub/docs/subscription-message-filter>):
//!
//! ```text
//! filter    := unary ( ("AND" unary)* | ("OR" unary)* )
//! unary     := ("NOT" | "-") unary | primary
//! primary   := "(" filter ")"
//!            | "attributes" ":" key
//!            | "attributes" "." key ("=" | "!=") string
//!            | "hasPrefix" "(" "attributes" "." key "," string ")"
//! key       := identifier | string
//! identifier:= [A-Za-z_][A-Za-z0-9_]*
//! string    := '"' (character | escape)* '"'
//! ```
//!
//! * `AND`, `OR` and `NOT` are uppercase only.
//! * `AND` and `OR` cannot be mixed at one level without parentheses:
//!   `a AND b OR c` is rejected, `(a AND b) OR c` is accepted.
//! * `attributes.k != "v"` is true when `k` is absent, as is
//!   `NOT attributes.k = "v"`; `=` and `hasPrefix` are false when it is absent.
//! * Whitespace between tokens is insignificant.
//! * Escapes in strings: `\\ \" \' \n \r \t \b \f \v \a \? \``, `\xHH`,
//!   `\uHHHH`, `\UHHHHHHHH` and octal `\OOO` (Unicode code points).
//!
//! The 256-byte length limit of a filter is checked by the caller, as is
//! the meaning of an empty filter (no filtering); [`Filter::parse`] rejects
//! empty text.

use std::fmt;

use crate::published::Attributes;
use std::iter::Peekable;
use std::str::{CharIndices, FromStr};

/// Deepest nesting of parentheses and `NOT`/`-` accepted, so that parsing,
/// evaluating and dropping a filter can never exhaust the stack whatever the
/// input.
const MAX_DEPTH: usize = 64;

/// A parsed subscription filter.
///
/// Built only by [`Filter::parse`] (or [`str::parse`]); evaluate it with
/// [`Filter::matches`]. Its [`Display`](fmt::Display) form is a canonical
/// filter text that parses back to an equal `Filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    root: Expr,
}

/// One node of a filter's syntax tree.
///
/// Exposed so callers can inspect a filter (for example to log or describe
/// it); `And` and `Or` built by the parser always have at least two operands
/// and a parenthesised group is represented by its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `attributes:KEY` — the message has the attribute.
    HasAttribute(String),
    /// `attributes.KEY = "VALUE"` — the attribute is present and equal.
    Equals {
        /// Attribute key.
        key: String,
        /// Value compared against.
        value: String,
    },
    /// `attributes.KEY != "VALUE"` — the attribute is absent or different.
    NotEquals {
        /// Attribute key.
        key: String,
        /// Value compared against.
        value: String,
    },
    /// `hasPrefix(attributes.KEY, "PREFIX")` — the attribute is present and
    /// starts with the prefix.
    HasPrefix {
        /// Attribute key.
        key: String,
        /// Required prefix of the value.
        prefix: String,
    },
    /// `NOT expr` or `-expr`.
    Not(Box<Expr>),
    /// `a AND b AND ...` — every operand matches.
    And(Vec<Expr>),
    /// `a OR b OR ...` — at least one operand matches.
    Or(Vec<Expr>),
}

/// Why a filter text was rejected. The message is meant for the client
/// (returned as `INVALID_ARGUMENT`); positions are byte offsets into the
/// filter text, starting at 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The text is empty or only whitespace.
    #[error("Invalid filter: the filter is empty")]
    Empty,
    /// A token other than the one the grammar requires.
    #[error("Invalid filter: expected {expected} at position {position}, found {found}")]
    Unexpected {
        /// Byte offset of the offending token (the text's length at the end).
        position: usize,
        /// What the grammar allows there.
        expected: &'static str,
        /// What was there instead.
        found: String,
    },
    /// A character that starts no token.
    #[error("Invalid filter: unexpected character `{character}` at position {position}")]
    UnexpectedCharacter {
        /// Byte offset of the character.
        position: usize,
        /// The character.
        character: char,
    },
    /// A string literal without its closing quote.
    #[error("Invalid filter: unterminated string starting at position {position}")]
    UnterminatedString {
        /// Byte offset of the opening quote.
        position: usize,
    },
    /// A backslash escape the language does not define.
    #[error("Invalid filter: invalid escape sequence `{sequence}` at position {position}")]
    InvalidEscape {
        /// Byte offset of the backslash.
        position: usize,
        /// The escape as written, as far as it was read.
        sequence: String,
    },
    /// A field other than `attributes` (for example `data`).
    #[error(
        "Invalid filter: unknown field `{name}` at position {position}; only `attributes` can be filtered on"
    )]
    UnknownField {
        /// Byte offset of the name.
        position: usize,
        /// The name as written.
        name: String,
    },
    /// A function other than `hasPrefix`.
    #[error(
        "Invalid filter: unknown function `{name}` at position {position}; the only function is `hasPrefix`"
    )]
    UnknownFunction {
        /// Byte offset of the name.
        position: usize,
        /// The name as written.
        name: String,
    },
    /// `and`, `Or`, `not`...: logical operators must be uppercase.
    #[error(
        "Invalid filter: `{found}` at position {position}; logical operators must be uppercase (AND, OR, NOT)"
    )]
    LowercaseOperator {
        /// Byte offset of the word.
        position: usize,
        /// The word as written.
        found: String,
    },
    /// `AND` and `OR` at the same level without parentheses.
    #[error(
        "Invalid filter: `{found}` at position {position} mixes AND and OR; use parentheses to group them"
    )]
    MixedAndOr {
        /// Byte offset of the operator that changes the chain's kind.
        position: usize,
        /// That operator.
        found: &'static str,
    },
    /// `attributes.""` or `attributes:""`.
    #[error("Invalid filter: empty attribute key at position {position}")]
    EmptyKey {
        /// Byte offset of the quoted key.
        position: usize,
    },
    /// Parentheses and negations nested too deeply.
    #[error("Invalid filter: nested more than {MAX_DEPTH} levels deep at position {position}")]
    TooDeep {
        /// Byte offset where the limit was passed.
        position: usize,
    },
}

impl Filter {
    /// Parses a filter text; see the module documentation for the grammar.
    ///
    /// Never panics, whatever the input.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        if text.trim().is_empty() {
            return Err(FilterError::Empty);
        }
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens: &tokens,
            next: 0,
            end: text.len(),
            depth: 0,
        };
        let root = parser.expr()?;
        parser.expect_end(false)?;
        Ok(Filter { root })
    }

    /// Whether a message with these attributes passes the filter.
    pub fn matches<'a>(&self, attributes: impl Into<Attributes<'a>>) -> bool {
        self.root.matches(&attributes.into())
    }

    /// The filter's syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.root
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<Filter, FilterError> {
        Filter::parse(text)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(&self.root, f)
    }
}

impl Expr {
    fn matches(&self, attributes: &Attributes<'_>) -> bool {
        match self {
            Expr::HasAttribute(key) => attributes.contains_key(key),
            Expr::Equals { key, value } => attributes.get(key).is_some_and(|v| v == value),
            Expr::NotEquals { key, value } => attributes.get(key).is_none_or(|v| v != value),
            Expr::HasPrefix { key, prefix } => attributes
                .get(key)
                .is_some_and(|v| v.starts_with(prefix.as_str())),
            Expr::Not(inner) => !inner.matches(attributes),
            Expr::And(items) => items.iter().all(|e| e.matches(attributes)),
            Expr::Or(items) => items.iter().any(|e| e.matches(attributes)),
        }
    }
}

// ---------------------------------------------------------------------------
// Printing

fn write_expr(expr: &Expr, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match expr {
        Expr::HasAttribute(key) => {
            f.write_str("attributes:")?;
            write_key(key, f)
        }
        Expr::Equals { key, value } => {
            f.write_str("attributes.")?;
            write_key(key, f)?;
            f.write_str(" = ")?;
            write_string(value, f)
        }
        Expr::NotEquals { key, value } => {
            f.write_str("attributes.")?;
            write_key(key, f)?;
            f.write_str(" != ")?;
            write_string(value, f)
        }
        Expr::HasPrefix { key, prefix } => {
            f.write_str("hasPrefix(attributes.")?;
            write_key(key, f)?;
            f.write_str(", ")?;
            write_string(prefix, f)?;
            f.write_str(")")
        }
        Expr::Not(inner) => {
            f.write_str("NOT ")?;
            write_operand(inner, f)
        }
        Expr::And(items) => write_chain(items, " AND ", f),
        Expr::Or(items) => write_chain(items, " OR ", f),
    }
}

/// Writes an operand of `NOT`, `AND` or `OR`, parenthesising chains so the
/// text never mixes operators and re-parses to the same tree.
fn write_operand(expr: &Expr, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if matches!(expr, Expr::And(_) | Expr::Or(_)) {
        f.write_str("(")?;
        write_expr(expr, f)?;
        f.write_str(")")
    } else {
        write_expr(expr, f)
    }
}

fn write_chain(items: &[Expr], separator: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        write_operand(item, f)?;
    }
    Ok(())
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn write_key(key: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if is_identifier(key) {
        f.write_str(key)
    } else {
        write_string(key, f)
    }
}

fn write_string(text: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
            c => fmt::Write::write_char(f, c)?,
        }
    }
    f.write_str("\"")
}

/// A string quoted as in a filter, for error messages.
fn quoted(text: &str) -> String {
    struct Quoted<'a>(&'a str);
    impl fmt::Display for Quoted<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_string(self.0, f)
        }
    }
    Quoted(text).to_string()
}

// ---------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    Dot,
    Colon,
    Eq,
    Ne,
    Minus,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(pos, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            '.' => Some(Tok::Dot),
            ':' => Some(Tok::Colon),
            '=' => Some(Tok::Eq),
            '-' => Some(Tok::Minus),
            _ => None,
        };
        let tok = if let Some(tok) = single {
            chars.next();
            tok
        } else if c == '!' {
            chars.next();
            match chars.peek() {
                Some(&(_, '=')) => {
                    chars.next();
                    Tok::Ne
                }
                _ => {
                    return Err(FilterError::UnexpectedCharacter {
                        position: pos,
                        character: '!',
                    });
                }
            }
        } else if c == '"' {
            chars.next();
            Tok::Str(lex_string(&mut chars, pos)?)
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut word = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    word.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            Tok::Ident(word)
        } else {
            return Err(FilterError::UnexpectedCharacter {
                position: pos,
                character: c,
            });
        };
        tokens.push(Token { tok, pos });
    }
    Ok(tokens)
}

/// Reads a string literal after its opening quote (at byte `start`).
fn lex_string(chars: &mut Peekable<CharIndices<'_>>, start: usize) -> Result<String, FilterError> {
    let mut out = String::new();
    loop {
        match chars.next() {
            None => return Err(FilterError::UnterminatedString { position: start }),
            Some((_, '"')) => return Ok(out),
            Some((pos, '\\')) => out.push(lex_escape(chars, start, pos)?),
            Some((_, c)) => out.push(c),
        }
    }
}

/// Reads the rest of an escape whose backslash is at byte `pos`.
fn lex_escape(
    chars: &mut Peekable<CharIndices<'_>>,
    start: usize,
    pos: usize,
) -> Result<char, FilterError> {
    let Some((_, c)) = chars.next() else {
        return Err(FilterError::UnterminatedString { position: start });
    };
    let simple = match c {
        '"' => Some('"'),
        '\'' => Some('\''),
        '\\' => Some('\\'),
        '?' => Some('?'),
        '`' => Some('`'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'b' => Some('\u{8}'),
        'f' => Some('\u{c}'),
        'v' => Some('\u{b}'),
        'a' => Some('\u{7}'),
        _ => None,
    };
    if let Some(simple) = simple {
        return Ok(simple);
    }
    let mut sequence = format!("\\{c}");
    let (digits, radix) = match c {
        'x' => (2, 16),
        'u' => (4, 16),
        'U' => (8, 16),
        '0'..='3' => (2, 8),
        _ => {
            return Err(FilterError::InvalidEscape {
                position: pos,
                sequence,
            });
        }
    };
    let mut value = c.to_digit(8).unwrap_or(0);
    for _ in 0..digits {
        let digit = match chars.next() {
            Some((_, d)) => {
                sequence.push(d);
                d.to_digit(radix)
            }
            None => None,
        };
        let Some(digit) = digit else {
            return Err(FilterError::InvalidEscape {
                position: pos,
                sequence,
            });
        };
        // At most 8 hex digits: cannot overflow u32.
        value = value * radix + digit;
    }
    char::from_u32(value).ok_or(FilterError::InvalidEscape {
        position: pos,
        sequence,
    })
}

// ---------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chain {
    And,
    Or,
}

#[derive(Debug)]
struct Parser<'a> {
    tokens: &'a [Token],
    next: usize,
    /// Length of the text: the position reported for "end of filter".
    end: usize,
    depth: usize,
}

fn describe(tok: Option<&Token>) -> String {
    match tok.map(|t| &t.tok) {
        None => "end of filter".to_owned(),
        Some(Tok::Ident(word)) => format!("`{word}`"),
        Some(Tok::Str(text)) => format!("string {}", quoted(text)),
        Some(Tok::LParen) => "`(`".to_owned(),
        Some(Tok::RParen) => "`)`".to_owned(),
        Some(Tok::Comma) => "`,`".to_owned(),
        Some(Tok::Dot) => "`.`".to_owned(),
        Some(Tok::Colon) => "`:`".to_owned(),
        Some(Tok::Eq) => "`=`".to_owned(),
        Some(Tok::Ne) => "`!=`".to_owned(),
        Some(Tok::Minus) => "`-`".to_owned(),
    }
}

fn is_lowercase_operator(word: &str) -> bool {
    ["AND", "OR", "NOT"]
        .iter()
        .any(|op| word.eq_ignore_ascii_case(op) && word != *op)
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.next)
    }

    fn bump(&mut self) -> Option<&'a Token> {
        let tok = self.tokens.get(self.next);
        if tok.is_some() {
            self.next += 1;
        }
        tok
    }

    fn position_of(&self, tok: Option<&Token>) -> usize {
        tok.map_or(self.end, |t| t.pos)
    }

    fn unexpected(&self, tok: Option<&Token>, expected: &'static str) -> FilterError {
        match tok {
            Some(Token {
                tok: Tok::Ident(word),
                pos,
            }) if is_lowercase_operator(word) => FilterError::LowercaseOperator {
                position: *pos,
                found: word.clone(),
            },
            _ => FilterError::Unexpected {
                position: self.position_of(tok),
                expected,
                found: describe(tok),
            },
        }
    }

    fn enter(&mut self, position: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::TooDeep { position });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// After a complete expression: the end of the text (top level) or `)`.
    fn expect_end(&mut self, in_parens: bool) -> Result<(), FilterError> {
        let tok = self.bump();
        match (tok.map(|t| &t.tok), in_parens) {
            (None, false) | (Some(Tok::RParen), true) => Ok(()),
            (_, false) => Err(self.unexpected(tok, "AND, OR or end of filter")),
            (_, true) => Err(self.unexpected(tok, "AND, OR or `)`")),
        }
    }

    /// `unary ( (AND unary)* | (OR unary)* )`.
    fn expr(&mut self) -> Result<Expr, FilterError> {
        let first = self.unary()?;
        let mut chain: Option<Chain> = None;
        let mut rest = Vec::new();
        while let Some(Token {
            tok: Tok::Ident(word),
            pos,
        }) = self.peek()
        {
            let (this, name) = match word.as_str() {
                "AND" => (Chain::And, "AND"),
                "OR" => (Chain::Or, "OR"),
                _ => break,
            };
            if chain.is_some_and(|c| c != this) {
                return Err(FilterError::MixedAndOr {
                    position: *pos,
                    found: name,
                });
            }
            chain = Some(this);
            self.bump();
            rest.push(self.unary()?);
        }
        let Some(chain) = chain else {
            return Ok(first);
        };
        let mut items = Vec::with_capacity(rest.len() + 1);
        items.push(first);
        items.append(&mut rest);
        Ok(match chain {
            Chain::And => Expr::And(items),
            Chain::Or => Expr::Or(items),
        })
    }

    /// `("NOT" | "-") unary | primary`.
    fn unary(&mut self) -> Result<Expr, FilterError> {
        let tok = self.peek();
        let negation = match tok.map(|t| &t.tok) {
            Some(Tok::Minus) => true,
            Some(Tok::Ident(word)) => word == "NOT",
            _ => false,
        };
        if !negation {
            return self.primary();
        }
        self.enter(self.position_of(tok))?;
        self.bump();
        let inner = self.unary()?;
        self.leave();
        Ok(Expr::Not(Box::new(inner)))
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        let tok = self.bump();
        match tok.map(|t| &t.tok) {
            Some(Tok::LParen) => {
                self.enter(self.position_of(tok))?;
                let inner = self.expr()?;
                self.expect_end(true)?;
                self.leave();
                Ok(inner)
            }
            Some(Tok::Ident(word)) if word == "attributes" => self.attribute_condition(),
            Some(Tok::Ident(word)) if word == "hasPrefix" => self.has_prefix(),
            Some(Tok::Ident(word)) => {
                let position = self.position_of(tok);
                if is_lowercase_operator(word) {
                    Err(FilterError::LowercaseOperator {
                        position,
                        found: word.clone(),
                    })
                } else if matches!(self.peek().map(|t| &t.tok), Some(Tok::LParen)) {
                    Err(FilterError::UnknownFunction {
                        position,
                        name: word.clone(),
                    })
                } else {
                    Err(FilterError::UnknownField {
                        position,
                        name: word.clone(),
                    })
                }
            }
            _ => Err(self.unexpected(tok, "a condition")),
        }
    }

    /// After `attributes`: `: key` or `. key (= | !=) string`.
    fn attribute_condition(&mut self) -> Result<Expr, FilterError> {
        let tok = self.bump();
        match tok.map(|t| &t.tok) {
            Some(Tok::Colon) => Ok(Expr::HasAttribute(self.key()?)),
            Some(Tok::Dot) => {
                let key = self.key()?;
                let op = self.bump();
                let equal = match op.map(|t| &t.tok) {
                    Some(Tok::Eq) => true,
                    Some(Tok::Ne) => false,
                    _ => return Err(self.unexpected(op, "`=` or `!=`")),
                };
                let value = self.string()?;
                Ok(if equal {
                    Expr::Equals { key, value }
                } else {
                    Expr::NotEquals { key, value }
                })
            }
            _ => Err(self.unexpected(tok, "`.` or `:` after `attributes`")),
        }
    }

    /// After `hasPrefix`: `( attributes . key , string )`.
    fn has_prefix(&mut self) -> Result<Expr, FilterError> {
        self.punct(Tok::LParen, "`(` after `hasPrefix`")?;
        let tok = self.bump();
        if !matches!(tok.map(|t| &t.tok), Some(Tok::Ident(word)) if word == "attributes") {
            return Err(self.unexpected(tok, "`attributes.KEY` as hasPrefix's first argument"));
        }
        self.punct(Tok::Dot, "`.` after `attributes`")?;
        let key = self.key()?;
        self.punct(Tok::Comma, "`,`")?;
        let prefix = self.string()?;
        self.punct(Tok::RParen, "`)` closing hasPrefix")?;
        Ok(Expr::HasPrefix { key, prefix })
    }

    fn punct(&mut self, want: Tok, expected: &'static str) -> Result<(), FilterError> {
        let tok = self.bump();
        if tok.map(|t| &t.tok) == Some(&want) {
            Ok(())
        } else {
            Err(self.unexpected(tok, expected))
        }
    }

    /// An attribute key: identifier or non-empty string.
    fn key(&mut self) -> Result<String, FilterError> {
        let tok = self.bump();
        match tok {
            Some(Token {
                tok: Tok::Ident(word),
                ..
            }) => Ok(word.clone()),
            Some(Token {
                tok: Tok::Str(text),
                pos,
            }) => {
                if text.is_empty() {
                    Err(FilterError::EmptyKey { position: *pos })
                } else {
                    Ok(text.clone())
                }
            }
            _ => Err(self.unexpected(tok, "an attribute key")),
        }
    }

    fn string(&mut self) -> Result<String, FilterError> {
        let tok = self.bump();
        match tok.map(|t| &t.tok) {
            Some(Tok::Str(text)) => Ok(text.clone()),
            _ => Err(self.unexpected(tok, "a string in double quotes")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(text: &str) -> Filter {
        Filter::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn err(text: &str) -> FilterError {
        match Filter::parse(text) {
            Ok(f) => panic!("{text:?} should not parse, got {f:?}"),
            Err(e) => {
                assert!(e.to_string().starts_with("Invalid filter: "), "{e}");
                e
            }
        }
    }

    fn eq(key: &str, value: &str) -> Expr {
        Expr::Equals {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    fn has(key: &str) -> Expr {
        Expr::HasAttribute(key.to_owned())
    }

    /// Parses, then checks the canonical text re-parses to the same tree.
    fn roundtrip(text: &str) -> Filter {
        let filter = parse(text);
        let printed = filter.to_string();
        assert_eq!(parse(&printed), filter, "{text:?} printed as {printed:?}");
        filter
    }

    // -- constructs ---------------------------------------------------------

    #[test]
    fn has_attribute() {
        let f = roundtrip("attributes:kind");
        assert_eq!(f.expr(), &has("kind"));
        assert!(f.matches(&attrs(&[("kind", "")])));
        assert!(!f.matches(&attrs(&[("other", "kind")])));
        assert_eq!(f.to_string(), "attributes:kind");
    }

    #[test]
    fn equality_and_inequality() {
        let f = roundtrip("attributes.kind = \"ping\"");
        assert_eq!(f.expr(), &eq("kind", "ping"));
        assert!(f.matches(&attrs(&[("kind", "ping")])));
        assert!(!f.matches(&attrs(&[("kind", "pingx")])));
        assert!(!f.matches(&attrs(&[])));

        let f = roundtrip("attributes.kind != \"ping\"");
        assert!(!f.matches(&attrs(&[("kind", "ping")])));
        assert!(f.matches(&attrs(&[("kind", "pong")])));
        assert!(f.matches(&attrs(&[])), "absent key is != any value");

        let f = roundtrip("attributes.kind = \"\"");
        assert!(f.matches(&attrs(&[("kind", "")])));
        assert!(!f.matches(&attrs(&[])));
    }

    #[test]
    fn has_prefix() {
        let f = roundtrip("hasPrefix(attributes.kind, \"pi\")");
        assert_eq!(
            f.expr(),
            &Expr::HasPrefix {
                key: "kind".into(),
                prefix: "pi".into()
            }
        );
        assert!(f.matches(&attrs(&[("kind", "pi")])));
        assert!(f.matches(&attrs(&[("kind", "pizza")])));
        assert!(!f.matches(&attrs(&[("kind", "p")])));
        assert!(!f.matches(&attrs(&[])));
        let empty = roundtrip("hasPrefix(attributes.kind, \"\")");
        assert!(empty.matches(&attrs(&[("kind", "x")])));
        assert!(!empty.matches(&attrs(&[])));
        roundtrip("hasPrefix ( attributes . \"a b\" , \"x\" )");
    }

    #[test]
    fn negation() {
        for text in [
            "NOT attributes:kind",
            "-attributes:kind",
            "- attributes:kind",
        ] {
            let f = roundtrip(text);
            assert_eq!(f.expr(), &Expr::Not(Box::new(has("kind"))), "{text}");
            assert!(f.matches(&attrs(&[])));
            assert!(!f.matches(&attrs(&[("kind", "x")])));
        }
        let f = roundtrip("NOT NOT attributes:kind");
        assert!(f.matches(&attrs(&[("kind", "x")])));
        let f = roundtrip("--attributes:kind");
        assert!(f.matches(&attrs(&[("kind", "x")])));
        let f = roundtrip("NOT(attributes:a OR attributes:b)");
        assert!(f.matches(&attrs(&[("c", "")])));
        assert!(!f.matches(&attrs(&[("b", "")])));
        // NOT binds tighter than AND.
        let f = roundtrip("NOT attributes:a AND attributes:b");
        assert_eq!(
            f.expr(),
            &Expr::And(vec![Expr::Not(Box::new(has("a"))), has("b")])
        );
    }

    #[test]
    fn and_or_chains() {
        let f = roundtrip("attributes:a AND attributes:b AND attributes:c");
        assert_eq!(f.expr(), &Expr::And(vec![has("a"), has("b"), has("c")]));
        assert!(f.matches(&attrs(&[("a", ""), ("b", ""), ("c", "")])));
        assert!(!f.matches(&attrs(&[("a", ""), ("b", "")])));

        let f = roundtrip("attributes:a OR attributes:b OR attributes:c");
        assert_eq!(f.expr(), &Expr::Or(vec![has("a"), has("b"), has("c")]));
        assert!(f.matches(&attrs(&[("c", "")])));
        assert!(!f.matches(&attrs(&[("d", "")])));
    }

    #[test]
    fn mixing_and_or_needs_parentheses() {
        for text in [
            "attributes:a AND attributes:b OR attributes:c",
            "attributes:a OR attributes:b AND attributes:c",
            "(attributes:a OR attributes:b AND attributes:c)",
        ] {
            assert!(
                matches!(err(text), FilterError::MixedAndOr { .. }),
                "{text}"
            );
        }
        let e = err("attributes:a AND attributes:b OR attributes:c");
        assert_eq!(
            e.to_string(),
            "Invalid filter: `OR` at position 30 mixes AND and OR; use parentheses to group them"
        );
        let f = roundtrip("(attributes:a AND attributes:b) OR attributes:c");
        assert_eq!(
            f.expr(),
            &Expr::Or(vec![Expr::And(vec![has("a"), has("b")]), has("c")])
        );
        assert!(f.matches(&attrs(&[("c", "")])));
        assert!(f.matches(&attrs(&[("a", ""), ("b", "")])));
        assert!(!f.matches(&attrs(&[("a", "")])));
        roundtrip("attributes:a AND (attributes:b OR attributes:c)");
        roundtrip("((attributes:a))");
    }

    #[test]
    fn quoted_keys_and_escapes() {
        let f = roundtrip("attributes.\"my key\" = \"v\"");
        assert!(f.matches(&attrs(&[("my key", "v")])));
        let f = roundtrip("attributes:\"x-y\"");
        assert!(f.matches(&attrs(&[("x-y", "")])));
        assert_eq!(f.to_string(), "attributes:\"x-y\"");
        let f = roundtrip("attributes:\"plain\"");
        assert_eq!(f.to_string(), "attributes:plain");
        let f = roundtrip("attributes.\"iana.org/language_tag\" = \"en\"");
        assert!(f.matches(&attrs(&[("iana.org/language_tag", "en")])));
        // Keywords are fine as keys.
        roundtrip("attributes.AND = \"x\" AND attributes:NOT");

        let f = roundtrip(r#"attributes.k = "a\"b\\c\n\t\x41\u00e9\U0001F600\101\'\?""#);
        assert!(f.matches(&attrs(&[("k", "a\"b\\c\n\tA\u{e9}\u{1F600}A'?")])));
        let f = roundtrip("attributes.k = \"caf\u{e9} \u{1F600}\"");
        assert!(f.matches(&attrs(&[("k", "caf\u{e9} \u{1F600}")])));
        let f = roundtrip(r#"attributes.k = "\u0001""#);
        assert_eq!(f.to_string(), r#"attributes.k = "\u0001""#);

        for text in [
            r#"attributes.k = "\q""#,
            r#"attributes.k = "\x4""#,
            r#"attributes.k = "\uD800""#,
            r#"attributes.k = "\U00110000""#,
            r#"attributes.k = "\4""#,
        ] {
            assert!(
                matches!(err(text), FilterError::InvalidEscape { .. }),
                "{text}"
            );
        }
        assert!(matches!(
            err("attributes.k = \"abc"),
            FilterError::UnterminatedString { position: 15 }
        ));
        assert!(matches!(
            err("attributes.k = \"abc\\"),
            FilterError::UnterminatedString { .. }
        ));
        assert!(matches!(
            err("attributes:\"\""),
            FilterError::EmptyKey { position: 11 }
        ));
    }

    #[test]
    fn whitespace_is_insignificant() {
        let tight = parse("(attributes.a=\"1\"OR-attributes:b)AND hasPrefix(attributes.c,\"x\")");
        let loose = parse(
            " \t( attributes . a = \"1\"\n OR - attributes : b ) AND\r\nhasPrefix ( attributes.c , \"x\" ) ",
        );
        assert_eq!(tight, loose);
    }

    #[test]
    fn errors() {
        assert_eq!(err(""), FilterError::Empty);
        assert_eq!(err("  \n"), FilterError::Empty);
        assert_eq!(
            err("attributes.kind =").to_string(),
            "Invalid filter: expected a string in double quotes at position 17, found end of filter"
        );
        assert_eq!(
            err("nope(attributes.kind, \"x\")"),
            FilterError::UnknownFunction {
                position: 0,
                name: "nope".into()
            }
        );
        assert_eq!(
            err("data = \"x\""),
            FilterError::UnknownField {
                position: 0,
                name: "data".into()
            }
        );
        assert!(matches!(
            err("orderingKey = \"k\""),
            FilterError::UnknownField { .. }
        ));
        assert!(matches!(
            err("attributes:a and attributes:b"),
            FilterError::LowercaseOperator { position: 13, .. }
        ));
        assert!(matches!(
            err("not attributes:a"),
            FilterError::LowercaseOperator { position: 0, .. }
        ));
        assert!(matches!(
            err("attributes:a Or attributes:b"),
            FilterError::LowercaseOperator { .. }
        ));
        assert!(matches!(
            err("attributes.x-y = \"v\""),
            FilterError::Unexpected { position: 12, .. }
        ));
        assert!(matches!(
            err("attributes.k = v"),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("attributes.k"),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("attributes:k = \"v\""),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(err("attributes"), FilterError::Unexpected { .. }));
        assert!(matches!(
            err("(attributes:a"),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("attributes:a)"),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(err("()"), FilterError::Unexpected { .. }));
        assert!(matches!(err("NOT"), FilterError::Unexpected { .. }));
        assert!(matches!(
            err("attributes:a AND"),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("attributes:a attributes:b"),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("hasPrefix(attributes:k, \"x\")"),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("hasPrefix(attributes.k)"),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("hasPrefix(attributes.k, \"x\""),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("attributes.k ! \"x\""),
            FilterError::UnexpectedCharacter { character: '!', .. }
        ));
        assert!(matches!(
            err("attributes.k == \"x\""),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("attributes.k = 'x'"),
            FilterError::UnexpectedCharacter {
                character: '\'',
                ..
            }
        ));
        assert!(matches!(
            err("attributes.\u{e9} = \"x\""),
            FilterError::UnexpectedCharacter {
                character: '\u{e9}',
                position: 11
            }
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!(
            "{}attributes:a{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        parse(&ok);
        let deep = format!(
            "{}attributes:a{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(matches!(err(&deep), FilterError::TooDeep { .. }));
        let nots = format!("{}attributes:a", "NOT ".repeat(MAX_DEPTH + 1));
        assert!(matches!(err(&nots), FilterError::TooDeep { .. }));
        // Far past the limit, on a small stack: an error, not an overflow.
        let huge = "(-".repeat(100_000);
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || assert!(Filter::parse(&huge).is_err()))
            .unwrap()
            .join()
            .unwrap();
    }

    // -- recorded corpus (emulator-programs.json) ----------------------------

    /// Messages published by the `filters` program, by data.
    fn corpus_messages() -> Vec<(&'static str, HashMap<String, String>)> {
        vec![
            ("m1", attrs(&[("kind", "ping")])),
            ("m2", attrs(&[("kind", "pong")])),
            ("m3", attrs(&[("kind", "ping"), ("priority", "high")])),
            ("m4", attrs(&[("priority", "high")])),
            ("m5", attrs(&[])),
            ("m6", attrs(&[("kind", "pizza")])),
        ]
    }

    #[test]
    fn corpus_filters_program() {
        // (filter, messages the emulator delivered)
        let cases: &[(&str, &[&str])] = &[
            ("attributes.kind = \"ping\"", &["m1", "m3"]),
            ("attributes.kind != \"ping\"", &["m2", "m4", "m5", "m6"]),
            ("attributes:kind", &["m1", "m2", "m3", "m6"]),
            ("hasPrefix(attributes.kind, \"pi\")", &["m1", "m3", "m6"]),
            ("NOT attributes.kind = \"ping\"", &["m2", "m4", "m5", "m6"]),
            (
                "attributes.kind = \"ping\" AND attributes.priority = \"high\"",
                &["m3"],
            ),
            (
                "attributes.kind = \"pong\" OR attributes.priority = \"high\"",
                &["m2", "m3", "m4"],
            ),
            (
                "(attributes.kind = \"ping\" OR attributes.kind = \"pong\") AND NOT attributes:priority",
                &["m1", "m2"],
            ),
        ];
        let messages = corpus_messages();
        for (text, expected) in cases {
            let filter = roundtrip(text);
            let delivered: Vec<&str> = messages
                .iter()
                .filter(|(_, a)| filter.matches(a))
                .map(|(name, _)| *name)
                .collect();
            assert_eq!(&delivered, expected, "{text}");
        }
    }

    #[test]
    fn corpus_dead_letter_and_validation_programs() {
        let f = roundtrip("attributes.kind = \"poison\"");
        assert!(f.matches(&attrs(&[("kind", "poison")])));
        assert!(!f.matches(&attrs(&[("kind", "other")])));
        // subscription-create-validation: accepted filters.
        roundtrip("attributes.kind = \"ping\"");
        // Rejected by the emulator in all three programs.
        for text in [
            "attributes.kind =",
            "nope(attributes.kind, \"x\")",
            "data = \"x\"",
            "orderingKey = \"k\"",
        ] {
            err(text);
        }
    }

    #[test]
    fn documentation_examples() {
        // From cloud.google.com/pubsub/docs/subscription-message-filter.
        for text in [
            "attributes:domain",
            "NOT attributes:domain",
            "attributes.domain = \"com\"",
            "attributes.domain != \"com\"",
            "NOT attributes.domain = \"com\"",
            "hasPrefix(attributes.domain, \"co\")",
            "NOT hasPrefix(attributes.domain, \"co\")",
            "attributes:domain AND attributes.domain = \"com\"",
            "attributes:domain AND NOT attributes.domain = \"com\"",
            "attributes:domain OR attributes.lang_tag = \"en\"",
            "attributes:domain AND (attributes.lang_tag = \"en\" OR attributes.lang_tag = \"de\")",
            "-attributes:domain",
            "attributes.\"iana.org/language_tag\" = \"en\"",
        ] {
            roundtrip(text);
        }
    }

    // -- properties -----------------------------------------------------------

    const KEYS: &[&str] = &["a", "kind", "x-y", "my key", "AND", "q\"k", "_1"];
    const VALUES: &[&str] = &["", "p", "pi", "ping", "pong", "a\\b", "\"", "\u{e9}\n"];

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(KEYS).prop_map(str::to_owned)
    }

    fn value() -> impl Strategy<Value = String> {
        prop::sample::select(VALUES).prop_map(str::to_owned)
    }

    fn expr_strategy() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            key().prop_map(Expr::HasAttribute),
            (key(), value()).prop_map(|(key, value)| Expr::Equals { key, value }),
            (key(), value()).prop_map(|(key, value)| Expr::NotEquals { key, value }),
            (key(), value()).prop_map(|(key, prefix)| Expr::HasPrefix { key, prefix }),
        ];
        leaf.prop_recursive(5, 32, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
            ]
        })
    }

    fn attributes_strategy() -> impl Strategy<Value = HashMap<String, String>> {
        prop::collection::hash_map(key(), value(), 0..5)
    }

    const TOKENS: &[&str] = &[
        "attributes",
        "hasPrefix",
        "nope",
        "kind",
        "AND",
        "OR",
        "NOT",
        "and",
        ".",
        ":",
        "=",
        "!=",
        "!",
        "-",
        "(",
        ")",
        ",",
        "\"",
        "\"v\"",
        "\"\"",
        "\\",
        "\\u",
        " ",
        "\t",
        "x",
        "1",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let _ = Filter::parse(&text);
        }

        #[test]
        fn parse_never_panics_on_grammar_tokens(
            tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..40),
            attributes in attributes_strategy(),
        ) {
            let text = tokens.concat();
            if let Ok(filter) = Filter::parse(&text) {
                let _ = filter.matches(&attributes);
                let printed = filter.to_string();
                prop_assert_eq!(Filter::parse(&printed), Ok(filter));
            }
        }

        #[test]
        fn printed_ast_reparses_equivalently(
            root in expr_strategy(),
            maps in prop::collection::vec(attributes_strategy(), 1..8),
        ) {
            let original = Filter { root };
            let text = original.to_string();
            let reparsed = Filter::parse(&text);
            prop_assert!(reparsed.is_ok(), "{:?} failed: {:?}", text, reparsed);
            let reparsed = reparsed.unwrap();
            for map in &maps {
                prop_assert_eq!(reparsed.matches(map), original.matches(map), "{}", text);
            }
            prop_assert_eq!(reparsed, original);
        }
    }

    /// Deterministic fuzzing over random byte strings (lossily decoded) and
    /// over mutations of valid filters.
    #[test]
    fn fuzz_random_bytes() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"attributesANDORNOThasPrefix.:=!-(),\"\\ \t_xyz019";
        let seeds = [
            "(attributes.kind = \"ping\" OR attributes.kind = \"pong\") AND NOT attributes:priority",
            "hasPrefix(attributes.\"a b\", \"p\\u00e9\")",
        ];
        let sample = attrs(&[("kind", "ping"), ("priority", "high"), ("a b", "p\u{e9}")]);
        let mut parsed = 0;
        for round in 0..20_000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = match round % 3 {
                0 => (0..len).map(|_| next() as u8).collect(),
                1 => (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect(),
                _ => {
                    let mut b = seeds[round % seeds.len()].as_bytes().to_vec();
                    for _ in 0..1 + next() % 3 {
                        let at = (next() % b.len() as u64) as usize;
                        match next() % 3 {
                            0 => {
                                b.remove(at);
                            }
                            1 => b.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
                            _ => b[at] = next() as u8,
                        }
                        if b.is_empty() {
                            break;
                        }
                    }
                    b
                }
            };
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(filter) = Filter::parse(&text) {
                parsed += 1;
                let _ = filter.matches(&sample);
                let printed = filter.to_string();
                assert_eq!(Filter::parse(&printed).as_ref(), Ok(&filter), "{text:?}");
            }
        }
        assert!(
            parsed > 0,
            "mutations of valid filters should sometimes parse"
        );
    }
}
