//! The smallest WAGI guest in Rust: the baseline that shows the host's own cost per
//! request, since Rust's start-up is nearly free next to Go's.
use std::io::Write;

fn main() {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b"Content-Type: text/plain\r\n\r\nhello from Rust\n");
}
