//! `CgiResponse`: parses what a CGI program wrote to stdout (RFC 3875 §6).
//!
//! The header block ends at the first empty line (`\n` or `\r\n` line ends). `Status`
//! sets the status; `Location` without `Status` means a 302 redirect; every other field is
//! a response header (repeated fields such as `Set-Cookie` are kept). At least one of
//! `Content-Type`, `Location` or `Status` must be present, as the RFC requires: output
//! without them is not a CGI response, and the host answers 502 instead of passing on
//! whatever the guest printed.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

/// Largest header block accepted.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// A parsed CGI response.
#[derive(Debug)]
pub struct CgiResponse {
    /// Status code.
    pub status: StatusCode,
    /// Response headers (CGI control fields removed).
    pub headers: HeaderMap,
    /// Body bytes (a slice of the captured output, no copy).
    pub body: Bytes,
}

/// Why the output was not a CGI response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CgiParseError {
    /// The guest wrote nothing.
    #[error("the program wrote nothing to stdout")]
    Empty,
    /// No empty line ends the header block.
    #[error("no blank line ends the CGI header block")]
    NoHeaderEnd,
    /// A header line is not `Name: value`.
    #[error("line {line} of the CGI header block is not \"Name: value\": {text:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The line, cut to 80 characters.
        text: String,
    },
    /// `Status` is not a three-digit code of a final response (1xx codes are interim
    /// responses an HTTP server cannot send as the answer).
    #[error("invalid Status field {0:?}")]
    BadStatus(String),
    /// None of the required fields.
    #[error("the CGI header block has none of Content-Type, Location or Status")]
    NoCgiField,
}

impl CgiResponse {
    /// Parses captured stdout.
    pub fn parse(out: Bytes) -> Result<Self, CgiParseError> {
        if out.is_empty() {
            return Err(CgiParseError::Empty);
        }
        let mut headers = HeaderMap::new();
        let mut status: Option<StatusCode> = None;
        let mut has_location = false;
        let mut has_content_type = false;
        let mut pos = 0usize;
        let mut line_no = 0usize;
        loop {
            if pos > MAX_HEADER_BYTES {
                return Err(CgiParseError::NoHeaderEnd);
            }
            let Some(nl) = out[pos..].iter().position(|&b| b == b'\n') else {
                return Err(if line_no == 0 && !out.contains(&b':') {
                    bad_line(1, &out[pos..])
                } else {
                    CgiParseError::NoHeaderEnd
                });
            };
            line_no += 1;
            let raw = &out[pos..pos + nl];
            pos += nl + 1;
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if line.is_empty() {
                break;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(bad_line(line_no, line));
            };
            let name = &line[..colon];
            let value = trim(&line[colon + 1..]);
            let Ok(name) = HeaderName::from_bytes(name) else {
                return Err(bad_line(line_no, line));
            };
            let Ok(value) = HeaderValue::from_bytes(value) else {
                return Err(bad_line(line_no, line));
            };
            if name.as_str() == "status" {
                let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
                let code = text
                    .split_whitespace()
                    .next()
                    .filter(|c| c.len() == 3)
                    .and_then(|c| c.parse::<u16>().ok())
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .filter(|c| !c.is_informational())
                    .ok_or_else(|| CgiParseError::BadStatus(text.clone()))?;
                status = Some(code);
                continue;
            }
            if name == header::LOCATION {
                has_location = true;
            }
            if name == header::CONTENT_TYPE {
                has_content_type = true;
            }
            if is_hop_by_hop(&name) {
                continue;
            }
            headers.append(name, value);
        }
        if status.is_none() && !has_location && !has_content_type {
            return Err(CgiParseError::NoCgiField);
        }
        let status = status.unwrap_or(if has_location {
            StatusCode::FOUND
        } else {
            StatusCode::OK
        });
        Ok(CgiResponse {
            status,
            headers,
            body: out.slice(pos..),
        })
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn bad_line(line: usize, text: &[u8]) -> CgiParseError {
    let text: String = String::from_utf8_lossy(text).chars().take(80).collect();
    CgiParseError::BadLine { line, text }
}

/// Headers the host, not the guest, decides (framing and connection management).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
            | "content-length"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<CgiResponse, CgiParseError> {
        CgiResponse::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn status_headers_and_body() {
        let r = parse("Status: 418 I'm a teapot\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 99\r\n\r\nbody\r\n\r\nmore").unwrap();
        assert_eq!(r.status, StatusCode::IM_A_TEAPOT);
        assert_eq!(r.headers.get_all("set-cookie").iter().count(), 2);
        assert!(r.headers.get("content-length").is_none());
        assert_eq!(&r.body[..], b"body\r\n\r\nmore");
    }

    #[test]
    fn location_means_redirect_and_bare_newlines_work() {
        let r = parse("Location: /elsewhere\n\n").unwrap();
        assert_eq!(r.status, StatusCode::FOUND);
        assert_eq!(r.headers["location"], "/elsewhere");
        let r = parse("Content-Type: text/html\n\n<p>").unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"<p>");
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse("").unwrap_err(), CgiParseError::Empty);
        assert!(matches!(
            parse("hello world\n"),
            Err(CgiParseError::BadLine { line: 1, .. })
        ));
        assert!(matches!(
            parse("\u{1}\u{2}garbage"),
            Err(CgiParseError::BadLine { .. })
        ));
        assert_eq!(
            parse("Content-Type: text/plain\r\n").unwrap_err(),
            CgiParseError::NoHeaderEnd
        );
        assert_eq!(
            parse("X-Foo: bar\n\nbody").unwrap_err(),
            CgiParseError::NoCgiField
        );
        assert!(matches!(
            parse("Status: abc\n\n"),
            Err(CgiParseError::BadStatus(_))
        ));
        // Found by the property tests: an interim status is no answer.
        assert!(matches!(
            parse("Status: 100 Continue\n\n"),
            Err(CgiParseError::BadStatus(_))
        ));
        assert!(matches!(
            parse("Status: 101 Switching Protocols\n\n"),
            Err(CgiParseError::BadStatus(_))
        ));
        assert!(matches!(
            parse("Bad Name: x\n\n"),
            Err(CgiParseError::BadLine { .. })
        ));
    }
}
