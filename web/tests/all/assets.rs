//! Static files embedded in the binary.

use axum::http::StatusCode;

use crate::support::Dash;

#[tokio::test]
async fn static_files_are_served_with_their_content_types() {
    let d = Dash::new().await;
    for (file, ct, bytes, looks_like) in [
        (
            "app.css",
            "text/css; charset=utf-8",
            &include_bytes!("../../static/app.css")[..],
            "{",
        ),
        (
            "htmx.min.js",
            "text/javascript; charset=utf-8",
            &include_bytes!("../../static/htmx.min.js")[..],
            "htmx",
        ),
        (
            "alpine.min.js",
            "text/javascript; charset=utf-8",
            &include_bytes!("../../static/alpine.min.js")[..],
            "Alpine",
        ),
        (
            "dashboard.js",
            "text/javascript; charset=utf-8",
            &include_bytes!("../../static/dashboard.js")[..],
            "uploader",
        ),
    ] {
        // No session needed: the sign-in page uses them too.
        let p = d.get(&format!("/static/{file}"), None).await;
        assert_eq!(p.status, StatusCode::OK, "{file}");
        assert_eq!(p.headers["content-type"], ct, "{file}");
        assert_eq!(p.headers["cache-control"], "public, max-age=3600", "{file}");
        assert!(bytes.len() > 100, "{file} is built");
        assert_eq!(p.body.as_bytes(), bytes, "{file} served as embedded");
        assert!(p.body.contains(looks_like), "{file}");
    }
    for missing in ["nope.css", "app.css.map", "..%2FCargo.toml", "%2E%2E"] {
        let p = d.get(&format!("/static/{missing}"), None).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{missing}");
    }
}

#[tokio::test]
async fn every_file_a_page_links_is_served() {
    let d = Dash::new().await;
    let b = d.admin().await;
    for page in ["/login", "/apps", "/tokens", "/logs"] {
        let p = if page == "/login" {
            d.get(page, None).await
        } else {
            d.get_as(&b, page).await
        };
        p.assert_ok();
        let links: Vec<&str> = p
            .body
            .match_indices("\"/static/")
            .map(|(i, _)| {
                let rest = &p.body[i + 1..];
                &rest[..rest.find('"').unwrap()]
            })
            .collect();
        assert!(links.len() >= 4, "{page}: {links:?}");
        for link in links {
            let a = d.get(link, None).await;
            assert_eq!(a.status, StatusCode::OK, "{page} links {link}");
        }
    }
}
