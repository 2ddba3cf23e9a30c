//! The API as the CLI and `platform up` use it: over HTTP (Connect JSON) or in-process.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use platform_control::Control;
use platform_control::auth::Caller;
use platform_control::error::ApiError;
use platform_proto::v1::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An API error as the user sees it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// Connect code (`not_found`, ...), or `unavailable` for transport failures.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl CallError {
    /// True for `not_found`.
    pub fn is_not_found(&self) -> bool {
        self.code == "not_found"
    }
}

impl From<ApiError> for CallError {
    fn from(e: ApiError) -> Self {
        CallError {
            code: e.code.as_str().into(),
            message: e.message,
        }
    }
}

/// The calls the CLI makes.
#[async_trait]
pub trait Api: Send + Sync {
    /// Uploads a module file.
    async fn upload(&self, path: &Path) -> Result<Module, CallError>;
    /// Uploads module bytes.
    async fn upload_bytes(&self, name: &str, bytes: Vec<u8>) -> Result<Module, CallError>;
    /// AppService/GetApp.
    async fn get_app(&self, r: GetAppRequest) -> Result<GetAppResponse, CallError>;
    /// AppService/CreateApp.
    async fn create_app(&self, r: CreateAppRequest) -> Result<CreateAppResponse, CallError>;
    /// AppService/ListApps.
    async fn list_apps(&self, r: ListAppsRequest) -> Result<ListAppsResponse, CallError>;
    /// AppService/SetAppTriggers.
    async fn set_triggers(
        &self,
        r: SetAppTriggersRequest,
    ) -> Result<SetAppTriggersResponse, CallError>;
    /// AppService/SetAppDedicated.
    async fn set_dedicated(
        &self,
        r: SetAppDedicatedRequest,
    ) -> Result<SetAppDedicatedResponse, CallError>;
    /// ReleaseService/CreateRelease.
    async fn create_release(
        &self,
        r: CreateReleaseRequest,
    ) -> Result<CreateReleaseResponse, CallError>;
    /// ReleaseService/GetRelease.
    async fn get_release(&self, r: GetReleaseRequest) -> Result<GetReleaseResponse, CallError>;
    /// ReleaseService/ListReleases.
    async fn list_releases(
        &self,
        r: ListReleasesRequest,
    ) -> Result<ListReleasesResponse, CallError>;
    /// ReleaseService/RollbackRelease.
    async fn rollback(
        &self,
        r: RollbackReleaseRequest,
    ) -> Result<RollbackReleaseResponse, CallError>;
    /// RouteService/CreateRoute.
    async fn create_route(&self, r: CreateRouteRequest) -> Result<CreateRouteResponse, CallError>;
    /// RouteService/ListRoutes.
    async fn list_routes(&self, r: ListRoutesRequest) -> Result<ListRoutesResponse, CallError>;
    /// RouteService/DeleteRoute.
    async fn delete_route(&self, r: DeleteRouteRequest) -> Result<DeleteRouteResponse, CallError>;
    /// DomainService/CreateDomain.
    async fn create_domain(
        &self,
        r: CreateDomainRequest,
    ) -> Result<CreateDomainResponse, CallError>;
    /// DomainService/ListDomains.
    async fn list_domains(&self, r: ListDomainsRequest) -> Result<ListDomainsResponse, CallError>;
    /// DomainService/DeleteDomain.
    async fn delete_domain(
        &self,
        r: DeleteDomainRequest,
    ) -> Result<DeleteDomainResponse, CallError>;
    /// TokenService/CreateToken.
    async fn create_token(&self, r: CreateTokenRequest) -> Result<CreateTokenResponse, CallError>;
    /// TokenService/ListTokens.
    async fn list_tokens(&self, r: ListTokensRequest) -> Result<ListTokensResponse, CallError>;
    /// TokenService/RevokeToken.
    async fn revoke_token(&self, r: RevokeTokenRequest) -> Result<RevokeTokenResponse, CallError>;
    /// FeedService/GetInfo.
    async fn get_info(&self, r: GetInfoRequest) -> Result<GetInfoResponse, CallError>;
    /// ReleaseService/SetTrafficSplit.
    async fn set_traffic_split(
        &self,
        r: SetTrafficSplitRequest,
    ) -> Result<SetTrafficSplitResponse, CallError>;
    /// SecretService/SetSecret.
    async fn set_secret(&self, r: SetSecretRequest) -> Result<SetSecretResponse, CallError>;
    /// SecretService/ListSecrets.
    async fn list_secrets(&self, r: ListSecretsRequest) -> Result<ListSecretsResponse, CallError>;
    /// SecretService/DeleteSecret.
    async fn delete_secret(
        &self,
        r: DeleteSecretRequest,
    ) -> Result<DeleteSecretResponse, CallError>;
}

/// The API over HTTP.
pub struct HttpApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl HttpApi {
    /// A client for `server` with `token`.
    pub fn new(server: &str, token: &str) -> anyhow::Result<Self> {
        Ok(HttpApi {
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .read_timeout(std::time::Duration::from_secs(120))
                .build()
                .context("HTTP client")?,
            base: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    async fn call<Req: Serialize + Sync, Resp: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
    ) -> Result<Resp, CallError> {
        let resp = self
            .http
            .post(format!("{}/platform.v1.{method}", self.base))
            .bearer_auth(&self.token)
            .json(req)
            .send()
            .await
            .map_err(|e| transport(&self.base, e))?;
        decode(resp).await
    }
}

fn transport(base: &str, e: reqwest::Error) -> CallError {
    CallError {
        code: "unavailable".into(),
        message: format!(
            "cannot reach the Platform API at {base}: {e} (is `platform up` or `platform control` running? set --server or PLATFORM_SERVER)"
        ),
    }
}

async fn decode<Resp: DeserializeOwned>(resp: reqwest::Response) -> Result<Resp, CallError> {
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| CallError {
        code: "unavailable".into(),
        message: e.to_string(),
    })?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| CallError {
            code: "internal".into(),
            message: format!("unexpected answer from the server: {e}"),
        });
    }
    #[derive(serde::Deserialize)]
    struct ErrBody {
        code: String,
        message: String,
    }
    match serde_json::from_slice::<ErrBody>(&body) {
        Ok(e) => Err(CallError {
            code: e.code,
            message: e.message,
        }),
        Err(_) => Err(CallError {
            code: "unknown".into(),
            message: format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim()),
        }),
    }
}

#[async_trait]
impl Api for HttpApi {
    async fn upload(&self, path: &Path) -> Result<Module, CallError> {
        let file = tokio::fs::File::open(path).await.map_err(|e| CallError {
            code: "invalid_argument".into(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let resp = self
            .http
            .post(format!("{}/v1/modules", self.base))
            .query(&[("name", name)])
            .bearer_auth(&self.token)
            .header("content-type", "application/wasm")
            .header("content-length", len)
            .body(reqwest::Body::from(file))
            .send()
            .await
            .map_err(|e| transport(&self.base, e))?;
        decode(resp).await
    }

    async fn upload_bytes(&self, name: &str, bytes: Vec<u8>) -> Result<Module, CallError> {
        let resp = self
            .http
            .post(format!("{}/v1/modules", self.base))
            .query(&[("name", name)])
            .bearer_auth(&self.token)
            .body(bytes)
            .send()
            .await
            .map_err(|e| transport(&self.base, e))?;
        decode(resp).await
    }

    async fn get_app(&self, r: GetAppRequest) -> Result<GetAppResponse, CallError> {
        self.call("AppService/GetApp", &r).await
    }

    async fn create_app(&self, r: CreateAppRequest) -> Result<CreateAppResponse, CallError> {
        self.call("AppService/CreateApp", &r).await
    }

    async fn list_apps(&self, r: ListAppsRequest) -> Result<ListAppsResponse, CallError> {
        self.call("AppService/ListApps", &r).await
    }

    async fn set_triggers(
        &self,
        r: SetAppTriggersRequest,
    ) -> Result<SetAppTriggersResponse, CallError> {
        self.call("AppService/SetAppTriggers", &r).await
    }

    async fn set_dedicated(
        &self,
        r: SetAppDedicatedRequest,
    ) -> Result<SetAppDedicatedResponse, CallError> {
        self.call("AppService/SetAppDedicated", &r).await
    }

    async fn create_release(
        &self,
        r: CreateReleaseRequest,
    ) -> Result<CreateReleaseResponse, CallError> {
        self.call("ReleaseService/CreateRelease", &r).await
    }

    async fn get_release(&self, r: GetReleaseRequest) -> Result<GetReleaseResponse, CallError> {
        self.call("ReleaseService/GetRelease", &r).await
    }

    async fn list_releases(
        &self,
        r: ListReleasesRequest,
    ) -> Result<ListReleasesResponse, CallError> {
        self.call("ReleaseService/ListReleases", &r).await
    }

    async fn rollback(
        &self,
        r: RollbackReleaseRequest,
    ) -> Result<RollbackReleaseResponse, CallError> {
        self.call("ReleaseService/RollbackRelease", &r).await
    }

    async fn create_route(&self, r: CreateRouteRequest) -> Result<CreateRouteResponse, CallError> {
        self.call("RouteService/CreateRoute", &r).await
    }

    async fn list_routes(&self, r: ListRoutesRequest) -> Result<ListRoutesResponse, CallError> {
        self.call("RouteService/ListRoutes", &r).await
    }

    async fn delete_route(&self, r: DeleteRouteRequest) -> Result<DeleteRouteResponse, CallError> {
        self.call("RouteService/DeleteRoute", &r).await
    }

    async fn create_domain(
        &self,
        r: CreateDomainRequest,
    ) -> Result<CreateDomainResponse, CallError> {
        self.call("DomainService/CreateDomain", &r).await
    }

    async fn list_domains(&self, r: ListDomainsRequest) -> Result<ListDomainsResponse, CallError> {
        self.call("DomainService/ListDomains", &r).await
    }

    async fn delete_domain(
        &self,
        r: DeleteDomainRequest,
    ) -> Result<DeleteDomainResponse, CallError> {
        self.call("DomainService/DeleteDomain", &r).await
    }

    async fn create_token(&self, r: CreateTokenRequest) -> Result<CreateTokenResponse, CallError> {
        self.call("TokenService/CreateToken", &r).await
    }

    async fn list_tokens(&self, r: ListTokensRequest) -> Result<ListTokensResponse, CallError> {
        self.call("TokenService/ListTokens", &r).await
    }

    async fn revoke_token(&self, r: RevokeTokenRequest) -> Result<RevokeTokenResponse, CallError> {
        self.call("TokenService/RevokeToken", &r).await
    }

    async fn get_info(&self, r: GetInfoRequest) -> Result<GetInfoResponse, CallError> {
        self.call("FeedService/GetInfo", &r).await
    }

    async fn set_traffic_split(
        &self,
        r: SetTrafficSplitRequest,
    ) -> Result<SetTrafficSplitResponse, CallError> {
        self.call("ReleaseService/SetTrafficSplit", &r).await
    }

    async fn set_secret(&self, r: SetSecretRequest) -> Result<SetSecretResponse, CallError> {
        self.call("SecretService/SetSecret", &r).await
    }

    async fn list_secrets(&self, r: ListSecretsRequest) -> Result<ListSecretsResponse, CallError> {
        self.call("SecretService/ListSecrets", &r).await
    }

    async fn delete_secret(
        &self,
        r: DeleteSecretRequest,
    ) -> Result<DeleteSecretResponse, CallError> {
        self.call("SecretService/DeleteSecret", &r).await
    }
}

/// The API called in-process (for `platform up`), as a given caller.
pub struct InProcessApi {
    /// The control plane.
    pub ctl: Arc<Control>,
    /// Who the calls are made as.
    pub caller: Caller,
}

#[async_trait]
impl Api for InProcessApi {
    async fn upload(&self, path: &Path) -> Result<Module, CallError> {
        let bytes = tokio::fs::read(path).await.map_err(|e| CallError {
            code: "invalid_argument".into(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.upload_bytes(&name, bytes).await
    }

    async fn upload_bytes(&self, name: &str, bytes: Vec<u8>) -> Result<Module, CallError> {
        Ok(platform_control::api::modules::store_upload(
            &self.ctl,
            &self.caller,
            Some(name),
            &Default::default(),
            axum::body::Body::from(bytes),
        )
        .await?)
    }

    async fn get_app(&self, r: GetAppRequest) -> Result<GetAppResponse, CallError> {
        Ok(platform_control::api::apps::get_app(self.ctl.clone(), self.caller.clone(), r).await?)
    }

    async fn create_app(&self, r: CreateAppRequest) -> Result<CreateAppResponse, CallError> {
        Ok(
            platform_control::api::apps::create_app(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn list_apps(&self, r: ListAppsRequest) -> Result<ListAppsResponse, CallError> {
        Ok(
            platform_control::api::apps::list_apps(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn set_triggers(
        &self,
        r: SetAppTriggersRequest,
    ) -> Result<SetAppTriggersResponse, CallError> {
        Ok(platform_control::api::triggers::set_app_triggers(
            self.ctl.clone(),
            self.caller.clone(),
            r,
        )
        .await?)
    }

    async fn set_dedicated(
        &self,
        r: SetAppDedicatedRequest,
    ) -> Result<SetAppDedicatedResponse, CallError> {
        Ok(platform_control::api::triggers::set_app_dedicated(
            self.ctl.clone(),
            self.caller.clone(),
            r,
        )
        .await?)
    }

    async fn create_release(
        &self,
        r: CreateReleaseRequest,
    ) -> Result<CreateReleaseResponse, CallError> {
        Ok(platform_control::api::releases::create_release(
            self.ctl.clone(),
            self.caller.clone(),
            r,
        )
        .await?)
    }

    async fn get_release(&self, r: GetReleaseRequest) -> Result<GetReleaseResponse, CallError> {
        Ok(
            platform_control::api::releases::get_release(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn list_releases(
        &self,
        r: ListReleasesRequest,
    ) -> Result<ListReleasesResponse, CallError> {
        Ok(
            platform_control::api::releases::list_releases(
                self.ctl.clone(),
                self.caller.clone(),
                r,
            )
            .await?,
        )
    }

    async fn rollback(
        &self,
        r: RollbackReleaseRequest,
    ) -> Result<RollbackReleaseResponse, CallError> {
        Ok(platform_control::api::releases::rollback_release(
            self.ctl.clone(),
            self.caller.clone(),
            r,
        )
        .await?)
    }

    async fn create_route(&self, r: CreateRouteRequest) -> Result<CreateRouteResponse, CallError> {
        Ok(
            platform_control::api::routes::create_route(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn list_routes(&self, r: ListRoutesRequest) -> Result<ListRoutesResponse, CallError> {
        Ok(
            platform_control::api::routes::list_routes(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn delete_route(&self, r: DeleteRouteRequest) -> Result<DeleteRouteResponse, CallError> {
        Ok(
            platform_control::api::routes::delete_route(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn create_domain(
        &self,
        r: CreateDomainRequest,
    ) -> Result<CreateDomainResponse, CallError> {
        Ok(
            platform_control::api::domains::create_domain(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn list_domains(&self, r: ListDomainsRequest) -> Result<ListDomainsResponse, CallError> {
        Ok(
            platform_control::api::domains::list_domains(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn delete_domain(
        &self,
        r: DeleteDomainRequest,
    ) -> Result<DeleteDomainResponse, CallError> {
        Ok(
            platform_control::api::domains::delete_domain(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn create_token(&self, r: CreateTokenRequest) -> Result<CreateTokenResponse, CallError> {
        Ok(
            platform_control::api::tokens::create_token(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn list_tokens(&self, r: ListTokensRequest) -> Result<ListTokensResponse, CallError> {
        Ok(
            platform_control::api::tokens::list_tokens(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn revoke_token(&self, r: RevokeTokenRequest) -> Result<RevokeTokenResponse, CallError> {
        Ok(
            platform_control::api::tokens::revoke_token(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn get_info(&self, r: GetInfoRequest) -> Result<GetInfoResponse, CallError> {
        Ok(platform_control::api::feed::get_info(self.ctl.clone(), self.caller.clone(), r).await?)
    }

    async fn set_traffic_split(
        &self,
        r: SetTrafficSplitRequest,
    ) -> Result<SetTrafficSplitResponse, CallError> {
        Ok(platform_control::api::releases::set_traffic_split(
            self.ctl.clone(),
            self.caller.clone(),
            r,
        )
        .await?)
    }

    async fn set_secret(&self, r: SetSecretRequest) -> Result<SetSecretResponse, CallError> {
        Ok(
            platform_control::api::secrets::set_secret(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn list_secrets(&self, r: ListSecretsRequest) -> Result<ListSecretsResponse, CallError> {
        Ok(
            platform_control::api::secrets::list_secrets(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }

    async fn delete_secret(
        &self,
        r: DeleteSecretRequest,
    ) -> Result<DeleteSecretResponse, CallError> {
        Ok(
            platform_control::api::secrets::delete_secret(self.ctl.clone(), self.caller.clone(), r)
                .await?,
        )
    }
}
