//! A wasip2 command: exports `wasi:cli/run`, not `wasi:http/incoming-handler`.

fn main() {
    println!("I am a command, not an HTTP handler");
}
