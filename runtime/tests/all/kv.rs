//! Key-value stores: every (tenant, app, store) has its own data on both backends, and
//! keys follow one rule everywhere.

use std::sync::Arc;

use bytes::Bytes;
use platform_runtime::sdk::kv::{FileKv, KvBackend, KvError, KvScope, NatsKv, bucket_name};
use platform_test_guests as guests;

use crate::support::{App, TestHost, client};

fn nats_url() -> &'static str {
    "nats://127.0.0.1:4222"
}

async fn nats() -> async_nats::Client {
    async_nats::connect(nats_url())
        .await
        .expect("NATS with JetStream on 127.0.0.1:4222")
}

/// Pairs of (tenant, app) that the old naming joined into the same store: with `_` between
/// the parts and `-` turned into `_`, both of a pair read `t_labs_api` (NATS) or `a_b_c`
/// (files).
const LOOKALIKES: [[(&str, &str); 2]; 2] = [
    [("t", "labs-api"), ("t-labs", "api")],
    [("a_b", "c"), ("a", "b_c")],
];

/// Two apps of look-alike scopes, one counter each, through the counter guest.
async fn lookalike_apps_count_separately(host: &TestHost, suffix: &str) {
    let counter = guests::sdk_example("counter");
    let c = client();
    for [(t1, a1), (t2, a2)] in LOOKALIKES {
        let (a1, a2) = (format!("{a1}{suffix}"), format!("{a2}{suffix}"));
        host.deploy(&[
            App {
                tenant: t1,
                ..App::new(&a1, &counter, &["one.test/"])
            },
            App {
                tenant: t2,
                ..App::new(&a2, &counter, &["two.test/"])
            },
        ]);
        let count = |site: &'static str| {
            c.post(host.url("/count/visitor"))
                .header("host", site)
                .send()
        };
        let text = |r: reqwest::Response| async move { r.text().await.unwrap() };
        assert_eq!(text(count("one.test").await.unwrap()).await, "1\n");
        assert_eq!(
            text(count("two.test").await.unwrap()).await,
            "1\n",
            "tenant {t2} app {a2} sees the counter of tenant {t1} app {a1}"
        );
        assert_eq!(text(count("one.test").await.unwrap()).await, "2\n");
        assert_eq!(text(count("two.test").await.unwrap()).await, "2\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookalike_scopes_never_share_a_file_store() {
    let host = TestHost::start().await;
    lookalike_apps_count_separately(&host, "").await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookalike_scopes_never_share_a_nats_bucket() {
    let host = TestHost::start().await;
    let nats = nats().await;
    host.rt
        .sdk_pools
        .set_kv(Arc::new(platform_runtime::sdk::kv::NatsKv::new(
            nats.clone(),
        )));
    // Each run and test its own app names, so buckets of earlier runs and of the other
    // NATS test do not interfere.
    let suffix = format!("-counters{}", std::process::id());
    lookalike_apps_count_separately(&host, &suffix).await;
    host.stop().await;
    let js = async_nats::jetstream::new(nats);
    for [(t1, a1), (t2, a2)] in LOOKALIKES {
        for (t, a) in [(t1, a1), (t2, a2)] {
            let bucket = bucket_name(&scope(t, &format!("{a}{suffix}")));
            js.delete_key_value(bucket).await.unwrap();
        }
    }
}

fn scope(tenant: &str, app: &str) -> KvScope {
    KvScope {
        tenant: tenant.into(),
        app: app.into(),
        store: "default".into(),
    }
}

/// Keys both backends refuse, with what the message must say.
fn bad_keys() -> Vec<(String, &'static str)> {
    let mut bad: Vec<(String, &str)> = [
        ("", "empty key"),
        (".", "start or end with '.'"),
        ("..", "start or end with '.'"),
        (".tmp", "start or end with '.'"),
        (".tmpAbCd12", "start or end with '.'"),
        (".hidden", "start or end with '.'"),
        ("trailing.", "start or end with '.'"),
        ("a..b", "contain '..'"),
        ("x/../../y", "contain '..'"),
        ("a b", "' ' is not allowed"),
        ("ünï", "'ü' is not allowed"),
        ("a*", "'*' is not allowed"),
        ("a>", "'>' is not allowed"),
        ("a\\b", "is not allowed"),
        ("a\nb", "is not allowed"),
        ("a:b", "':' is not allowed"),
    ]
    .into_iter()
    .map(|(k, m)| (k.to_string(), m))
    .collect();
    bad.push(("k".repeat(1025), "too long"));
    bad
}

/// What every backend must do: refuse bad keys itself, keep look-alike scopes apart, list
/// exactly the keys set under a prefix.
async fn backend_behaves(kv: &dyn KvBackend, suffix: &str) -> Vec<KvScope> {
    let mut used = Vec::new();
    let s = scope("t", &format!("conformance{suffix}"));
    used.push(s.clone());
    for (key, says) in bad_keys() {
        let results = [
            kv.get(&s, &key).await.map(|_| ()),
            kv.set(&s, &key, Bytes::from_static(b"v")).await,
            kv.delete(&s, &key).await,
        ];
        for r in results {
            match r {
                Err(KvError::Invalid(msg)) => {
                    assert!(msg.contains(says), "{key:?}: {msg}");
                    assert!(msg.contains("A-Z a-z 0-9 - _ / = ."), "{key:?}: {msg}");
                }
                other => panic!("{key:?} must be refused, got {other:?}"),
            }
        }
    }
    assert!(
        kv.keys(&s, "").await.unwrap().is_empty(),
        "nothing was stored"
    );

    for [(t1, a1), (t2, a2)] in LOOKALIKES {
        let (x, y) = (
            scope(t1, &format!("{a1}{suffix}")),
            scope(t2, &format!("{a2}{suffix}")),
        );
        kv.set(&x, "counter", Bytes::from_static(b"x"))
            .await
            .unwrap();
        kv.set(&y, "counter", Bytes::from_static(b"y"))
            .await
            .unwrap();
        assert_eq!(
            kv.get(&x, "counter").await.unwrap().as_deref(),
            Some(&b"x"[..])
        );
        assert_eq!(
            kv.get(&y, "counter").await.unwrap().as_deref(),
            Some(&b"y"[..])
        );
        kv.delete(&x, "counter").await.unwrap();
        assert_eq!(
            kv.get(&y, "counter").await.unwrap().as_deref(),
            Some(&b"y"[..])
        );
        used.extend([x, y]);
    }

    let keys = [
        "a", "a/b", "a/b/c", "a=b", "A", "ab", "b", "x/./y", "tmp", "tmp.1", "a.b", "-", "_", "=",
        "/", "//", "/./",
    ];
    for k in keys {
        kv.set(&s, k, Bytes::from(k.to_string())).await.unwrap();
    }
    kv.set(&s, "a", Bytes::from_static(b"again")).await.unwrap();
    let mut all: Vec<&str> = keys.to_vec();
    all.sort();
    assert_eq!(kv.keys(&s, "").await.unwrap(), all);
    assert_eq!(kv.keys(&s, "a/").await.unwrap(), ["a/b", "a/b/c"]);
    assert_eq!(
        kv.keys(&s, "a").await.unwrap(),
        ["a", "a.b", "a/b", "a/b/c", "a=b", "ab"]
    );
    assert_eq!(kv.keys(&s, "A").await.unwrap(), ["A"]);
    assert_eq!(kv.keys(&s, "tmp").await.unwrap(), ["tmp", "tmp.1"]);
    assert!(kv.keys(&s, "zzz").await.unwrap().is_empty());
    assert!(kv.keys(&s, "a b").await.unwrap().is_empty());
    assert_eq!(
        kv.get(&s, "a").await.unwrap().as_deref(),
        Some(&b"again"[..])
    );
    assert_eq!(
        kv.get(&s, "x/./y").await.unwrap().as_deref(),
        Some(&b"x/./y"[..])
    );
    // The longest key.
    let longest = "k".repeat(1024);
    kv.set(&s, &longest, Bytes::from_static(b"long"))
        .await
        .unwrap();
    assert_eq!(
        kv.get(&s, &longest).await.unwrap().as_deref(),
        Some(&b"long"[..])
    );
    kv.delete(&s, &longest).await.unwrap();
    kv.delete(&s, "a/b").await.unwrap();
    assert_eq!(kv.keys(&s, "a/").await.unwrap(), ["a/b/c"]);
    assert_eq!(kv.get(&s, "a/b").await.unwrap(), None);
    used
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

#[tokio::test]
async fn the_file_store_keeps_every_key_inside_its_store() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("kv");
    let kv = FileKv::new(&root);
    let used = backend_behaves(&kv, "").await;
    // Nothing outside the root; inside it, only the stores' own key files.
    let outside = files_under(outer.path());
    assert!(outside.iter().all(|p| p.starts_with("kv")), "{outside:?}");
    for p in files_under(&root) {
        let dir = root.join(&p);
        let dir = dir.parent().unwrap();
        assert!(
            used.iter().any(|s| kv.store_dir(s) == dir),
            "{} is not in a store directory",
            p.display()
        );
    }
    // A temporary file left in a store does not hide or add keys.
    let s = &used[0];
    std::fs::write(kv.store_dir(s).join(".tmpLeft0ver"), "tmp\nx").unwrap();
    assert!(kv.keys(s, "tmp").await.unwrap() == ["tmp", "tmp.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_store_behaves_like_the_file_store() {
    let nats = nats().await;
    let kv = NatsKv::new(nats.clone());
    let suffix = format!("-backend{}", std::process::id());
    let used = backend_behaves(&kv, &suffix).await;
    let js = async_nats::jetstream::new(nats);
    for s in used {
        js.delete_key_value(bucket_name(&s)).await.unwrap();
    }
}
