//! The built-in demo app `platform up` serves when no manifest is given, so a newcomer sees
//! a response at once. It is a tiny WAGI module written in WebAssembly text, assembled at
//! start-up: it runs through exactly the same path as a Go program would.

/// The demo's response text.
pub const DEMO_TEXT: &str = concat!(
    "Hello from Platform!\n\n",
    "This answer came from a WebAssembly module (the built-in demo) run in a wasmtime sandbox\n",
    "for this one request. Serve your own Go net/http handler:\n\n",
    "  GOOS=wasip1 GOARCH=wasm go build -o hello.wasm .\n",
    "  platform deploy hello.wasm --app hello --route /hello\n",
);

/// The demo module's binary.
pub fn demo_wasm() -> Vec<u8> {
    let response = format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{DEMO_TEXT}");
    let escaped: String = response
        .bytes()
        .map(|b| match b {
            b' '..=b'~' if b != b'"' && b != b'\\' => (b as char).to_string(),
            _ => format!("\\{b:02x}"),
        })
        .collect();
    let wat = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{escaped}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        len = response.len()
    );
    // The text above is fixed and valid; a failure here is a bug caught by the tests.
    wat::parse_str(wat).unwrap_or_default()
}
