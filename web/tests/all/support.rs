//! A dashboard over a real control plane on SQLite in a temporary directory, and a tiny
//! "browser" that sends requests through the router and keeps the session cookie.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use platform_control::blobs::BlobStore;
use platform_control::events::EventBus;
use platform_control::store::Store;
use platform_control::{Control, ControlConfig};
use platform_runtime::engine::{EngineFingerprint, EngineSettings, build_engine};
use platform_web::{NoObservability, WebConfig, WebState};
use sqlx::Row;
use tower::ServiceExt;

/// The dashboard and its control plane.
pub struct Dash {
    pub ctl: Arc<Control>,
    pub router: Router,
    /// Admin token of tenant `default`.
    pub admin: String,
    pub dir: tempfile::TempDir,
}

/// An answer, body read as text.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The `Location` of a redirect.
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no Location in {:?}: {}", self.status, self.body))
    }

    /// Panics unless this is a 303 to `to`.
    pub fn assert_redirect(&self, to: &str) {
        assert_eq!(
            self.status,
            StatusCode::SEE_OTHER,
            "expected a redirect to {to}: {}",
            self.body
        );
        assert_eq!(self.location(), to);
    }

    /// Panics unless this is a 200 page.
    pub fn assert_ok(&self) {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
    }

    /// The `Set-Cookie` headers.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The CSRF token the page carries for forms and HTMX.
    pub fn csrf(&self) -> String {
        between(&self.body, r#"<meta name="csrf-token" content=""#, "\"")
            .expect("csrf meta tag")
            .to_string()
    }

    /// The text of the element with `data-testid="{id}"`, up to the next tag.
    pub fn testid(&self, id: &str) -> Option<&str> {
        self.text_of(&format!(r#"data-testid="{id}""#))
    }

    /// The text of the first element whose opening tag has `attr`, up to the next tag.
    pub fn text_of(&self, attr: &str) -> Option<&str> {
        let start = self.body.find(attr)?;
        let rest = &self.body[start..];
        let open = rest.find('>')? + 1;
        let close = rest[open..].find('<')?;
        Some(rest[open..open + close].trim())
    }

    /// Panics if the body contains `needle`.
    pub fn assert_lacks(&self, needle: &str) {
        assert!(
            !self.body.contains(needle),
            "{needle:?} should not be on the page:\n{}",
            self.body
        );
    }

    /// Panics unless the body contains `needle`.
    pub fn assert_has(&self, needle: &str) {
        assert!(
            self.body.contains(needle),
            "{needle:?} should be on the page:\n{}",
            self.body
        );
    }
}

/// The text between `start` and the next `end`.
pub fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)?;
    Some(&s[i..i + j])
}

/// `application/x-www-form-urlencoded` of `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// A signed-in browser: its cookie and CSRF token.
#[derive(Debug, Clone)]
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

impl Dash {
    pub async fn new() -> Self {
        Self::with_config(WebConfig::default()).await
    }

    /// A dashboard with these settings.
    pub async fn with_config(config: WebConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!(
            "sqlite://{}",
            dir.path().join("platform.db").display()
        ))
        .await
        .unwrap();
        let blobs =
            BlobStore::open(&format!("file://{}", dir.path().join("blobs").display())).unwrap();
        let engine = build_engine(&EngineSettings {
            pooling: false,
            ..Default::default()
        })
        .unwrap();
        let ctl = Control::new(
            store,
            blobs,
            EventBus::in_process(),
            ControlConfig {
                public_url: "http://127.0.0.1:8080".into(),
                max_module_size: 16 << 20,
                staging_dir: dir.path().join("staging"),
                engine: EngineFingerprint::of(&engine),
                app_addresses: None,
                caps: Default::default(),
                quotas: Default::default(),
                secrets: Some(platform_control::secrets::SecretKeys::from_bytes(
                    &platform_control::secrets::SecretKeys::random_bytes(),
                    &[],
                )),
                dedicated_addresses: Default::default(),
            },
        );
        let admin = ctl
            .bootstrap_admin(&dir.path().join("admin-token"), None)
            .await
            .unwrap()
            .expect("bootstrap token")
            .secret;
        let router = platform_web::router(WebState {
            ctl: ctl.clone(),
            obs: Arc::new(NoObservability),
            config,
        });
        Dash {
            ctl,
            router,
            admin,
            dir,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Page {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        Page {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).expect("UTF-8 body"),
        }
    }

    /// `GET path`, with a session cookie when given.
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut req = Request::get(path);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// `POST path` with form fields, with a session cookie when given.
    pub async fn post(&self, path: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Page {
        let mut req =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::from(form(fields))).unwrap()).await
    }

    /// Posts the sign-in form as a browser does: loads the page first for its form token
    /// and the matching cookie.
    pub async fn login_post(&self, fields: &[(&str, &str)]) -> Page {
        let form = self.get("/login", None).await;
        form.assert_ok();
        let csrf = form.csrf();
        let cookie = form
            .set_cookies()
            .iter()
            .find_map(|c| {
                c.split(';')
                    .next()
                    .filter(|kv| kv.starts_with("platform_login="))
                    .map(str::to_string)
            })
            .expect("sign-in form cookie");
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &csrf));
        self.post("/login", Some(&cookie), &all).await
    }

    /// Signs in through the form; returns the browser, or the failed page.
    pub async fn sign_in(&self, fields: &[(&str, &str)]) -> Result<Browser, Page> {
        let page = self.login_post(fields).await;
        if page.status != StatusCode::SEE_OTHER {
            return Err(page);
        }
        let set = page.set_cookies();
        let cookie = set
            .iter()
            .find_map(|c| {
                c.split(';').next().filter(|kv| {
                    kv.starts_with("platform_session=")
                        || kv.starts_with("__Host-platform_session=")
                })
            })
            .unwrap_or_else(|| panic!("no session cookie in {set:?}"))
            .to_string();
        let apps = self.get("/apps", Some(&cookie)).await;
        apps.assert_ok();
        Ok(Browser {
            cookie,
            csrf: apps.csrf(),
        })
    }

    /// Signs in with the admin token.
    pub async fn admin(&self) -> Browser {
        self.sign_in(&[("token", &self.admin)]).await.unwrap()
    }

    /// `GET path` as `b`.
    pub async fn get_as(&self, b: &Browser, path: &str) -> Page {
        self.get(path, Some(&b.cookie)).await
    }

    /// `POST path` as `b`, with its CSRF token added to the form.
    pub async fn post_as(&self, b: &Browser, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all = vec![("csrf", b.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, Some(&b.cookie), &all).await
    }

    /// Uploads `bytes` the way the dashboard's uploader does (raw body, CSRF header).
    pub async fn upload(&self, b: &Browser, app: &str, name: &str, bytes: Vec<u8>) -> Page {
        let name: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
        let req = Request::post(format!("/apps/{app}/upload?name={name}"))
            .header(header::COOKIE, &b.cookie)
            .header("x-csrf-token", &b.csrf)
            .header("hx-request", "true")
            .header(header::CONTENT_TYPE, "application/wasm")
            .body(Body::from(bytes))
            .unwrap();
        self.send(req).await
    }

    /// Rows of a table (a quick look behind the dashboard's back).
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(self.ctl.store.pool())
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    }

    /// Names of the apps of tenant `default`.
    pub async fn app_names(&self) -> Vec<String> {
        sqlx::query("SELECT name FROM apps WHERE tenant = 'default' ORDER BY name")
            .fetch_all(self.ctl.store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String, _>(0).unwrap())
            .collect()
    }
}

/// A valid WAGI module (exports `_start` and `memory`, imports only WASI preview 1); `tag`
/// changes its digest.
pub fn wagi(tag: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "{tag}")
            (func (export "_start")))"#
    ))
    .unwrap()
}

impl Dash {
    /// Runs the compile worker until no job is left.
    pub async fn compile_all(&self) {
        let engine = build_engine(&EngineSettings {
            pooling: false,
            ..Default::default()
        })
        .unwrap();
        while platform_control::worker::run_one(&self.ctl, &engine)
            .await
            .unwrap()
        {}
    }
}
