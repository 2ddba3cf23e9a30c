//! Routing over real HTTP: hosts, longest prefix, 404, atomic swaps.

use platform_test_guests as guests;

use crate::support::{App, TestHost, client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_by_host_and_longest_prefix() {
    let host = TestHost::start().await;
    let mux = guests::go("cgimux");
    let hello = guests::go("hello");
    host.deploy(&[
        App::new("hello", &hello, &["/", "/api/v1/hello"]),
        App::new("mux", &mux, &["/api", "mux.example.com/"]),
    ]);
    let c = client();
    // Longest prefix: /api/v1/hello beats /api.
    let r = c.get(host.url("/api/v1/hello/x")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello from Go\n");
    // /api serves the mux, which sees the path below its prefix.
    let r = c.get(host.url("/api/items/7")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "item 7\n");
    // Segment boundaries: /apis is not under /api; it falls to "/".
    let r = c.get(host.url("/apis")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello from Go\n");
    // A host route beats every host-less one, whatever the path.
    let r = c
        .get(host.url("/items/9"))
        .header("host", "MUX.example.com:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "item 9\n");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_paths_get_404_with_request_id() {
    let host = TestHost::start().await;
    // No route table yet (a runtime starting): not "no such path", but "come back".
    let r = client().get(host.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.headers().contains_key("x-request-id"));
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("routes are not loaded yet")
    );
    let hello = guests::go("hello");
    host.deploy(&[App::new("hello", &hello, &["/hello"])]);
    let r = client().get(host.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("no app is routed at /nope")
    );
    let r = client().get(host.url("/hellothere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_swaps_are_atomic_under_load() {
    let host = TestHost::start().await;
    let hello = guests::go("hello");
    let mux = guests::go("cgimux");
    host.deploy(&[
        App::new("hello", &hello, &["/a"]),
        App::new("mux", &mux, &["/b"]),
    ]);
    let c = client();
    let load = (0..40).map(|i| {
        let c = c.clone();
        let url = host.url(if i % 2 == 0 { "/a" } else { "/b/items/1" });
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    });
    let swapper = async {
        for i in 0..20 {
            if i % 2 == 0 {
                host.deploy(&[
                    App::new("hello", &hello, &["/a"]),
                    App::new("mux", &mux, &["/b"]),
                ]);
            } else {
                host.deploy(&[
                    App::new("mux", &mux, &["/b"]),
                    App::new("hello", &hello, &["/a"]),
                ]);
            }
            tokio::task::yield_now().await;
        }
    };
    let (statuses, ()) = tokio::join!(futures::future::join_all(load), swapper);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    host.stop().await;
}
