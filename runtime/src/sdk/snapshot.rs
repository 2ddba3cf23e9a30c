//! Pre-initialized snapshots for SDK `per-request` isolation, made with wasmtime-wizer.
//!
//! The module is instrumented, instantiated with the host's own linker, and initialized:
//! `_initialize` (Go's runtime and package init), `platform_init` (the program's `main`,
//! which registers the handler) and, when exported, `platform_warmup` (the app's chance to
//! fill caches such as encoding/json's). Its memory and globals are then written back into
//! a new module. Each request instantiates that module fresh and goes straight to
//! `platform_handle`: full isolation without Go's start-up bill.
//!
//! Wizer leaves every data segment it does not need as an empty passive segment (Go emits
//! tens of thousands), and wasmtime spends ~100 µs per instantiation walking them; Go never
//! uses `memory.init`/`data.drop`, so after checking that, [`strip_empty_data_segments`]
//! removes them (`shared/design/MEASURED.md`: 112 µs → 3 µs).
//!
//! Frozen at snapshot time (documented for guest authors in `sdk/go/README.md`): anything
//! `init` or `main` computed, `math/rand` sequences and map iteration seeds, the process
//! environment (the SDK refreshes it from the release per request) and the argument list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmparser::{DataKind, Operator, Parser, Payload};
use wasmtime::{Engine, Linker, Module};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wizer::{InstanceState, SnapshotVal, Wizer};

use super::abi::{SDK_EXPORT_INIT, SDK_EXPORT_WARMUP, result};
use super::clock::EpochMonotonicClock;
use super::state::SdkHostState;
use crate::app::AppSpec;
use crate::guest::{self, GuestState, MemoryLimiter};
use crate::logs::CappedPipe;

/// Why a snapshot could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot snapshot the module: {0}")]
pub struct SnapshotError(pub String);

fn err(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError(format!("{e:#}"))
}

/// Initializes `wasm` and returns the snapshot module's bytes (not yet compiled). The
/// work (instrumenting, one compile, Go's start-up) runs on a blocking thread with its own
/// small executor, away from the request workers.
pub async fn make(
    engine: &Engine,
    linker: &Arc<Linker<GuestState>>,
    wasm: Vec<u8>,
) -> Result<Vec<u8>, SnapshotError> {
    let engine = engine.clone();
    let linker = linker.clone();
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(err)?;
        rt.block_on(make_here(&engine, &linker, &wasm))
    })
    .await
    .map_err(err)?
}

async fn make_here(
    engine: &Engine,
    linker: &Linker<GuestState>,
    wasm: &[u8],
) -> Result<Vec<u8>, SnapshotError> {
    let wizer = Wizer::new();
    let (cx, instrumented) = wizer.instrument(wasm).map_err(err)?;
    let module = Module::new(engine, &instrumented).map_err(err)?;
    let stderr = CappedPipe::new(64 * 1024);
    let wasi = WasiCtxBuilder::new()
        .stderr(stderr.clone())
        .monotonic_clock(EpochMonotonicClock)
        .build_p1();
    let spec = Arc::new(AppSpec::for_tests("snapshot"));
    let state = GuestState {
        wasi,
        limiter: MemoryLimiter::new(4 << 30),
        sdk: Some(SdkHostState::new(spec, None)),
    };
    let mut store = guest::new_store(engine, state, Instant::now() + Duration::from_secs(60));
    let instance = linker
        .instantiate_async(&mut store, &module)
        .await
        .map_err(err)?;
    let memory = instance.get_memory(&mut store, "memory");
    if let Some(s) = store.data_mut().sdk.as_mut() {
        s.memory = memory;
    }
    let init_result = async {
        if let Ok(f) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            f.call_async(&mut store, ()).await?;
        }
        let init = instance.get_typed_func::<(), i32>(&mut store, SDK_EXPORT_INIT)?;
        if init.call_async(&mut store, ()).await? == result::NO_HANDLER {
            wasmtime::bail!("the program's main never called platform.Handle");
        }
        if let Ok(warm) = instance.get_typed_func::<(), ()>(&mut store, SDK_EXPORT_WARMUP) {
            warm.call_async(&mut store, ()).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = init_result {
        let (out, _) = stderr.take();
        return Err(SnapshotError(format!(
            "initialization failed: {e:#}; stderr: {}",
            String::from_utf8_lossy(&out).trim()
        )));
    }
    let snapshot = wizer
        .snapshot(
            &cx,
            &mut Captured {
                store: &mut store,
                instance,
            },
        )
        .await
        .map_err(err)?;
    Ok(strip_empty_data_segments(&snapshot))
}

/// Lets Wizer read the initialized instance's globals and memory.
struct Captured<'a> {
    store: &'a mut wasmtime::Store<GuestState>,
    instance: wasmtime::Instance,
}

impl InstanceState for Captured<'_> {
    async fn global_get(&mut self, name: &str, _hint: wasmparser::ValType) -> SnapshotVal {
        // Wizer only asks for globals it exported from the instrumented module.
        match self
            .instance
            .get_global(&mut *self.store, name)
            .map(|g| g.get(&mut *self.store))
        {
            Some(wasmtime::Val::I32(x)) => SnapshotVal::I32(x),
            Some(wasmtime::Val::I64(x)) => SnapshotVal::I64(x),
            Some(wasmtime::Val::F32(x)) => SnapshotVal::F32(x),
            Some(wasmtime::Val::F64(x)) => SnapshotVal::F64(x),
            Some(wasmtime::Val::V128(x)) => SnapshotVal::V128(x.as_u128()),
            _ => SnapshotVal::I32(0),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        match self.instance.get_memory(&mut *self.store, name) {
            Some(m) => contents(m.data(&*self.store)),
            None => contents(&[]),
        }
    }
}

/// Removes empty passive data segments when no code uses `memory.init` or `data.drop`
/// (segment indices then mean nothing); otherwise returns the module unchanged.
pub fn strip_empty_data_segments(wasm: &[u8]) -> Vec<u8> {
    match try_strip(wasm) {
        Some(out) => out,
        None => wasm.to_vec(),
    }
}

fn try_strip(wasm: &[u8]) -> Option<Vec<u8>> {
    // First pass: make sure segment indices are unused.
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::CodeSectionEntry(body) = payload.ok()? {
            let mut ops = body.get_operators_reader().ok()?;
            while !ops.eof() {
                match ops.read().ok()? {
                    Operator::MemoryInit { .. } | Operator::DataDrop { .. } => return None,
                    _ => {}
                }
            }
        }
    }
    let mut out = Vec::with_capacity(wasm.len());
    out.extend_from_slice(&wasm[..8]);
    let mut kept_count = None;
    // Count kept segments first (the data count section comes before code and data).
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::DataSection(reader) = payload.ok()? {
            let mut n = 0u32;
            for d in reader {
                let d = d.ok()?;
                if !(matches!(d.kind, DataKind::Passive) && d.data.is_empty()) {
                    n += 1;
                }
            }
            kept_count = Some(n);
        }
    }
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.ok()?;
        match &payload {
            Payload::DataCountSection { .. } => {
                let mut content = Vec::new();
                leb(&mut content, kept_count?);
                section(&mut out, 12, &content);
            }
            Payload::DataSection(reader) => {
                let mut content = Vec::new();
                leb(&mut content, kept_count?);
                for d in reader.clone() {
                    let d = d.ok()?;
                    if matches!(d.kind, DataKind::Passive) && d.data.is_empty() {
                        continue;
                    }
                    content.extend_from_slice(&wasm[d.range.clone()]);
                }
                section(&mut out, 11, &content);
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    section(&mut out, id, &wasm[range]);
                }
            }
        }
    }
    Some(out)
}

fn leb(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(out: &mut Vec<u8>, id: u8, content: &[u8]) {
    out.push(id);
    leb(out, content.len() as u32);
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_empty_passive_segments() {
        let wasm = wat::parse_str(
            r#"(module (memory 1) (data (i32.const 0) "active") (data "") (data "passive") (data "")
                 (func (export "f")))"#,
        )
        .unwrap();
        let out = strip_empty_data_segments(&wasm);
        wasmparser::Validator::new().validate_all(&out).unwrap();
        let count = Parser::new(0)
            .parse_all(&out)
            .filter_map(|p| match p.unwrap() {
                Payload::DataSection(r) => Some(r.count()),
                _ => None,
            })
            .next()
            .unwrap();
        assert_eq!(count, 2);
    }

    #[test]
    fn keeps_segments_when_code_uses_them() {
        let wasm = wat::parse_str(
            r#"(module (memory 1) (data "") (data "x")
                 (func (export "f") (memory.init 1 (i32.const 0) (i32.const 0) (i32.const 1))))"#,
        )
        .unwrap();
        assert_eq!(strip_empty_data_segments(&wasm), wasm);
    }
}
