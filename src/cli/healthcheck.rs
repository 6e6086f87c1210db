//! `leadlink healthcheck`: GET a health endpoint and exit 0 on a 2xx, 1 otherwise. The
//! runtime image has no curl, so its HEALTHCHECK and the compose health checks use this.

use crate::config::{Config, ConfigError, ServerConfig};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use url::Url;

/// Docker runs the check every few seconds: a hung endpoint must fail it, not stall it.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Enough of an answer's body to say which dependency is down (`/readyz` names it).
const BODY_SHOWN: usize = 200;

#[derive(clap::Args)]
pub struct HealthcheckArgs {
    /// The endpoint to GET. Default: `/healthz` on `server.listen` of `--config`, or on
    /// 127.0.0.1:8080 without it.
    #[arg(long)]
    url: Option<Url>,
}

pub async fn run(config_path: Option<&Path>, args: HealthcheckArgs) -> anyhow::Result<()> {
    let verdict = match target(config_path, args.url) {
        Ok(url) => probe(&url, TIMEOUT).await,
        Err(why) => Err(why),
    };
    match verdict {
        Ok(healthy) => {
            println!("{healthy}");
            Ok(())
        }
        Err(why) => {
            // One line, as Docker keeps it in the container's health log.
            eprintln!("unhealthy: {why}");
            std::process::exit(1);
        }
    }
}

fn target(config_path: Option<&Path>, url: Option<Url>) -> Result<Url, String> {
    if let Some(url) = url {
        return Ok(url);
    }
    let listen = match config_path {
        Some(path) => match Config::load(Some(path)) {
            Ok(config) => config.server.listen,
            Err(ConfigError::Invalid(problems)) => {
                return Err(format!("invalid configuration: {}", problems.join("; ")));
            }
        },
        None => ServerConfig::default().listen,
    };
    Ok(healthz_url(listen))
}

/// `/healthz` at `listen`; a wildcard address is reached through the loopback of its family.
fn healthz_url(listen: SocketAddr) -> Url {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, listen.port());
    Url::parse(&format!("http://{addr}/healthz")).expect("an address makes a valid URL")
}

/// GETs `url`: `Ok` with a line saying so on a 2xx, `Err` with the reason otherwise.
async fn probe(url: &Url, timeout: Duration) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        // A health endpoint answers itself: a redirect or a proxy would check something else.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let response = client.get(url.clone()).send().await.map_err(|e| {
        let cause = anyhow::Error::from(e.without_url());
        format!("{url} did not answer: {cause:#}")
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(format!("healthy: {url} answered {status}"));
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let body: String = body.chars().take(BODY_SHOWN).collect();
    Err(format!("{url} answered {status} {body}")
        .trim_end()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    #[test]
    fn a_wildcard_listen_address_is_checked_on_the_loopback() {
        let url = |listen: &str| healthz_url(listen.parse().unwrap()).to_string();
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/healthz");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/healthz");
        assert_eq!(url("10.1.2.3:8081"), "http://10.1.2.3:8081/healthz");
    }

    #[test]
    fn without_a_url_or_a_config_the_default_listen_address_is_checked() {
        let url = target(None, None).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/healthz");
        let given = Url::parse("http://127.0.0.1:8081/readyz").unwrap();
        assert_eq!(target(None, Some(given.clone())).unwrap(), given);
    }

    #[test]
    fn a_missing_config_file_is_one_line_naming_it() {
        let why = target(Some(Path::new("/nonexistent/leadlink.toml")), None).unwrap_err();
        assert!(why.contains("/nonexistent/leadlink.toml"), "{why}");
        assert!(!why.contains('\n'), "{why}");
    }

    async fn serve(status: StatusCode, body: &'static str) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/readyz", get(move || async move { (status, body) }));
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Url::parse(&format!("http://{addr}/readyz")).unwrap()
    }

    #[tokio::test]
    async fn a_2xx_is_healthy() {
        let url = serve(StatusCode::OK, r#"{"status":"alive"}"#).await;
        let healthy = probe(&url, TIMEOUT).await.unwrap();
        assert!(healthy.contains("200 OK"), "{healthy}");
    }

    #[tokio::test]
    async fn a_503_is_unhealthy_and_says_what_the_endpoint_said() {
        let body = "{\"database\": \"ok\",\n \"broker\": \"connection refused\"}";
        let url = serve(StatusCode::SERVICE_UNAVAILABLE, body).await;
        let why = probe(&url, TIMEOUT).await.unwrap_err();
        assert!(why.contains("503 Service Unavailable"), "{why}");
        assert!(why.contains(r#""broker": "connection refused""#), "{why}");
        assert!(!why.contains('\n'), "{why}");
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let url = serve(StatusCode::TEMPORARY_REDIRECT, "").await;
        let why = probe(&url, TIMEOUT).await.unwrap_err();
        assert!(why.contains("307"), "{why}");
    }

    #[tokio::test]
    async fn an_endpoint_that_does_not_answer_in_time_is_unhealthy() {
        // Accepts the connection and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/healthz",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let why = probe(&url, Duration::from_millis(200)).await.unwrap_err();
        assert!(why.contains("did not answer"), "{why}");
        drop(listener);
    }
}
