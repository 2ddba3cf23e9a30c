//! The apps list, an app's page, releases, routes and deleting.

use axum::http::StatusCode;

use crate::support::{Dash, between, wagi};

#[tokio::test]
async fn created_app_appears_in_the_list() {
    let d = Dash::new().await;
    let b = d.admin().await;
    let empty = d.get_as(&b, "/apps").await;
    empty.assert_ok();
    empty.assert_has("No apps yet.");
    empty.assert_has(r#"<form method="post" action="/apps""#);

    let p = d.post_as(&b, "/apps", &[("name", "  hello  ")]).await;
    p.assert_redirect("/apps/hello");
    let page = d.get_as(&b, "/apps/hello").await;
    page.assert_ok();
    assert_eq!(page.testid("app-name"), Some("hello"));
    assert_eq!(
        page.testid("live-release"),
        Some("no live release yet: upload a module and release it")
    );
    page.assert_has("No routes: the app is not reachable yet.");
    page.assert_has("Upload a module first.");

    d.post_as(&b, "/apps", &[("name", "second-app")])
        .await
        .assert_redirect("/apps/second-app");
    let list = d.get_as(&b, "/apps").await;
    list.assert_ok();
    list.assert_lacks("No apps yet.");
    for name in ["hello", "second-app"] {
        list.assert_has(&format!(r#"<tr data-testid="app-row-{name}">"#));
        list.assert_has(&format!(r#"href="/apps/{name}">{name}</a>"#));
    }
    assert_eq!(d.app_names().await, ["hello", "second-app"]);
}

#[tokio::test]
async fn invalid_app_name_shows_the_api_error_by_the_field_and_creates_nothing() {
    let d = Dash::new().await;
    let b = d.admin().await;
    for (name, says) in [
        (
            "Bad_Name",
            "invalid app name &#34;Bad_Name&#34;: use 1-63 lower-case letters, digits and &#39;-&#39;",
        ),
        (
            "-dash",
            "invalid app name &#34;-dash&#34;: use 1-63 lower-case letters, digits and &#39;-&#39;",
        ),
        (
            "",
            "invalid app name &#34;&#34;: use 1-63 lower-case letters, digits and &#39;-&#39;",
        ),
    ] {
        let p = d.post_as(&b, "/apps", &[("name", name)]).await;
        p.assert_ok();
        assert_eq!(p.text_of(r#"id="new-app-error""#), Some(says), "{name:?}");
        // The field keeps what was typed, marked red and tied to the message.
        p.assert_has(&format!(r#"id="new-app" name="name" value="{name}""#));
        p.assert_has(r#"aria-describedby="new-app-error""#);
        p.assert_has("border-red-400");
    }
    assert!(d.app_names().await.is_empty());

    // A taken name.
    d.post_as(&b, "/apps", &[("name", "taken")])
        .await
        .assert_redirect("/apps/taken");
    let p = d.post_as(&b, "/apps", &[("name", "taken")]).await;
    p.assert_ok();
    assert_eq!(
        p.text_of(r#"id="new-app-error""#),
        Some("an app named &#34;taken&#34; already exists")
    );
    assert_eq!(d.app_names().await, ["taken"]);
}

#[tokio::test]
async fn user_text_is_escaped_on_the_app_page() {
    const XSS: &str = "<script>alert(1)</script>";
    const ESCAPED: &str = "&#60;script&#62;alert(1)&#60;/script&#62;";
    let d = Dash::new().await;
    let b = d.admin().await;
    d.post_as(&b, "/apps", &[("name", "esc")])
        .await
        .assert_redirect("/apps/esc");

    // A module name is the uploader's text.
    let up = d
        .upload(&b, "esc", &format!("{XSS}.wasm"), wagi("esc"))
        .await;
    up.assert_ok();
    up.assert_has(&format!("{ESCAPED}.wasm"));
    up.assert_lacks(XSS);
    let digest = between(&up.body, "sha256:", "<").unwrap().to_string();

    // A release form with an env value and a bad memory size comes back with both, escaped.
    let env = format!("GREETING={XSS}\nOTHER=\"quoted\" & 'single'");
    let p = d
        .post_as(
            &b,
            "/apps/esc/releases",
            &[("module", &digest), ("env", &env), ("memory", XSS)],
        )
        .await;
    p.assert_ok();
    assert_eq!(p.headers["hx-push-url"], "/apps/esc");
    p.assert_lacks(XSS);
    p.assert_lacks("<script>alert");
    p.assert_has(&format!(
        "GREETING={ESCAPED}\nOTHER=&#34;quoted&#34; &#38; &#39;single&#39;</textarea>"
    ));
    assert_eq!(
        p.testid("release-error").unwrap(),
        format!("&#34;{ESCAPED}&#34; is not a size: write e.g. 128MiB or 10MB")
    );
    p.assert_has(&format!(r#"name="memory" value="{ESCAPED}""#));
    // The module list shows the uploaded name, escaped.
    p.assert_has(&format!("{ESCAPED}.wasm · WAGI (CGI) · compiling</option>"));

    // An env line that is not KEY=value is quoted back in the error.
    let p = d
        .post_as(
            &b,
            "/apps/esc/releases",
            &[("module", &digest), ("env", XSS)],
        )
        .await;
    p.assert_ok();
    p.assert_lacks(XSS);
    assert_eq!(
        p.testid("release-error").unwrap(),
        format!("Environment line 1 is not KEY=value: &#34;{ESCAPED}&#34;")
    );
    assert_eq!(d.count("SELECT COUNT(*) FROM releases").await, 0);

    // A route host the API refuses comes back in its field.
    let p = d
        .post_as(&b, "/apps/esc/routes", &[("host", XSS), ("path", "/esc")])
        .await;
    p.assert_ok();
    p.assert_lacks(XSS);
    p.assert_has(&format!(r#"name="host" value="{ESCAPED}""#));
    assert!(p.testid("route-error").is_some(), "{}", p.body);
    assert_eq!(d.count("SELECT COUNT(*) FROM routes").await, 0);

    // A one-time message from the address bar.
    let enc: String = url::form_urlencoded::byte_serialize(XSS.as_bytes()).collect();
    let p = d.get_as(&b, &format!("/apps/esc?msg=released-{enc}")).await;
    p.assert_ok();
    p.assert_lacks(XSS);
    assert_eq!(
        p.testid("flash").unwrap(),
        format!("Release #{ESCAPED} is live.")
    );

    // The error page for an app that does not exist names it, escaped.
    let p = d.get_as(&b, &format!("/apps/{enc}")).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND, "{}", p.body);
    // (This page is escaped by hand, with named entities.)
    p.assert_lacks(XSS);
    p.assert_has("&lt;script&gt;alert(1)&lt;/script&gt;");
    p.assert_has(r#"href="/apps">Back to apps</a>"#);
}

#[tokio::test]
async fn upload_compile_release_route_and_roll_back() {
    let d = Dash::new().await;
    let b = d.admin().await;
    d.post_as(&b, "/apps", &[("name", "flow")])
        .await
        .assert_redirect("/apps/flow");
    let up = d.upload(&b, "flow", "one.wasm", wagi("one")).await;
    up.assert_ok();
    assert_eq!(up.testid("module-abi"), Some("WAGI (CGI)"));
    // Still compiling: the fragment polls itself and offers no release button yet.
    let digest = between(&up.body, "sha256:", "<").unwrap().to_string();
    up.assert_has(&format!(r#"hx-get="/apps/flow/modules/{digest}""#));
    up.assert_lacks("release-now");

    d.compile_all().await;
    let m = d.get_as(&b, &format!("/apps/flow/modules/{digest}")).await;
    m.assert_ok();
    assert_eq!(m.testid("module-state"), Some("ready"));
    m.assert_lacks("hx-get=");
    m.assert_has(&format!(r#"name="module" value="{digest}""#));
    m.assert_has(&format!(r#"name="csrf" value="{}""#, b.csrf));

    let p = d
        .post_as(
            &b,
            "/apps/flow/releases",
            &[
                ("module", &digest),
                ("env", "A=1"),
                ("memory", "64MiB"),
                ("timeout", "2s"),
            ],
        )
        .await;
    p.assert_redirect("/apps/flow?msg=released-1");
    let page = d.get_as(&b, "/apps/flow?msg=released-1").await;
    assert_eq!(page.testid("flash"), Some("Release #1 is live."));
    assert_eq!(page.testid("live-release"), Some("release #1 is live"));
    page.assert_has(r#"<tr data-testid="release-1">"#);

    // A second build, released, then roll back to the first.
    let up = d.upload(&b, "flow", "two.wasm", wagi("two")).await;
    let digest2 = between(&up.body, "sha256:", "<").unwrap().to_string();
    d.compile_all().await;
    d.post_as(&b, "/apps/flow/releases", &[("module", &digest2)])
        .await
        .assert_redirect("/apps/flow?msg=released-2");
    let page = d.get_as(&b, "/apps/flow").await;
    assert_eq!(page.testid("live-release"), Some("release #2 is live"));
    assert_eq!(page.testid("rollback-1"), Some("Roll back to #1"));
    d.post_as(&b, "/apps/flow/rollback", &[("release", "1")])
        .await
        .assert_redirect("/apps/flow?msg=rolledback-1");
    let page = d.get_as(&b, "/apps/flow?msg=rolledback-1").await;
    assert_eq!(page.testid("flash"), Some("Release #1 is live again."));
    assert_eq!(page.testid("live-release"), Some("release #1 is live"));
    assert_eq!(page.testid("rollback-2"), Some("Make #2 live"));

    // Routes: added, listed, removed.
    d.post_as(&b, "/apps/flow/routes", &[("path", "/flow")])
        .await
        .assert_redirect("/apps/flow?msg=route");
    let page = d.get_as(&b, "/apps/flow?msg=route").await;
    assert_eq!(page.testid("flash"), Some("Route added."));
    assert_eq!(
        page.testid("route-link"),
        Some("http://127.0.0.1:8080/flow")
    );
    let list = d.get_as(&b, "/apps").await;
    list.assert_has(">#1 live</span>");
    list.assert_has(">/flow</a>");
    let id = between(&page.body, "/apps/flow/routes/", "/delete")
        .unwrap()
        .to_string();
    d.post_as(&b, &format!("/apps/flow/routes/{id}/delete"), &[])
        .await
        .assert_redirect("/apps/flow?msg=unrouted");
    let page = d.get_as(&b, "/apps/flow").await;
    page.assert_has("No routes: the app is not reachable yet.");
}

#[tokio::test]
async fn deleting_an_app_needs_its_name_typed() {
    let d = Dash::new().await;
    let b = d.admin().await;
    d.post_as(&b, "/apps", &[("name", "doomed")])
        .await
        .assert_redirect("/apps/doomed");
    let confirm = d.get_as(&b, "/apps/doomed/delete").await;
    confirm.assert_ok();
    confirm.assert_has("Delete doomed?");
    confirm.assert_has(r#"<form method="post" action="/apps/doomed/delete""#);

    let p = d
        .post_as(&b, "/apps/doomed/delete", &[("confirm", "doome")])
        .await;
    p.assert_ok();
    p.assert_has("Type doomed exactly to confirm.");
    assert_eq!(d.app_names().await, ["doomed"]);

    d.post_as(&b, "/apps/doomed/delete", &[("confirm", "doomed")])
        .await
        .assert_redirect("/apps");
    assert!(d.app_names().await.is_empty());
    let p = d.get_as(&b, "/apps/doomed").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn app_page_shows_event_triggers_and_dedicated_status() {
    use platform_control::auth::Caller;
    use platform_proto::v1::{
        EventTrigger, SetAppDedicatedRequest, SetAppTriggersRequest, SubjectTrigger,
    };
    let d = Dash::new().await;
    let b = d.admin().await;
    d.post_as(&b, "/apps", &[("name", "orders")])
        .await
        .assert_redirect("/apps/orders");
    let page = d.get_as(&b, "/apps/orders").await;
    // The triggers section is always there (it holds the add form), with no trigger yet.
    page.assert_has(r#"data-testid="triggers""#);
    page.assert_lacks(r#"data-testid="trigger""#);
    page.assert_lacks(r#"data-testid="dedicated""#);

    let caller = Caller {
        tenant: "default".into(),
        token_id: "test".into(),
        role: platform_control::auth::Role::Admin,
    };
    platform_control::api::triggers::set_app_triggers(
        d.ctl.clone(),
        caller.clone(),
        SetAppTriggersRequest {
            app: "orders".into(),
            event_triggers: vec![EventTrigger {
                event_type: "com.example.order.created".into(),
                path: "/events".into(),
            }],
            subject_triggers: vec![SubjectTrigger {
                subject: "orders.>".into(),
                path: String::new(),
            }],
        },
    )
    .await
    .unwrap();
    platform_control::api::triggers::set_app_dedicated(
        d.ctl.clone(),
        caller,
        SetAppDedicatedRequest {
            app: "orders".into(),
            dedicated: true,
        },
    )
    .await
    .unwrap();
    let page = d.get_as(&b, "/apps/orders").await;
    page.assert_ok();
    let triggers = between(&page.body, r#"data-testid="triggers">"#, "</ul>").unwrap();
    assert!(
        triggers.contains("com.example.order.created")
            && triggers.contains("/events")
            && triggers.contains("orders.&#62;"),
        "{triggers}"
    );
    let dedicated = between(&page.body, r#"data-testid="dedicated">"#, "</p>").unwrap();
    assert!(
        dedicated.contains("waiting for the control plane"),
        "{dedicated}"
    );
}

#[tokio::test]
async fn a_wasi_http_component_uploads_shows_its_kind_and_compiles() {
    let d = Dash::new().await;
    let b = d.admin().await;
    d.post_as(&b, "/apps", &[("name", "comp")])
        .await
        .assert_redirect("/apps/comp");
    let bytes = std::fs::read(platform_test_guests::http_component()).unwrap();
    let up = d.upload(&b, "comp", "comp.wasm", bytes).await;
    up.assert_ok();
    assert_eq!(up.testid("module-abi"), Some("component (wasi:http)"));
    let digest = between(&up.body, "sha256:", "<").unwrap().to_string();
    d.compile_all().await;
    let m = d.get_as(&b, &format!("/apps/comp/modules/{digest}")).await;
    assert_eq!(m.testid("module-state"), Some("ready"));
    let p = d
        .post_as(&b, "/apps/comp/releases", &[("module", &digest)])
        .await;
    p.assert_redirect("/apps/comp?msg=released-1");
}
