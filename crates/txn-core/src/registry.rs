//! The schema registry: Confluent's REST API (`POST /subjects/{subject}/versions`,
//! `GET /schemas/ids/{id}`), as Confluent's Schema Registry, Apicurio's and Cloudera's serve it.
//! Credentials (basic auth user info, in the URL or in `SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`)
//! are never printed: [`Registry::describe`] shows the URL without them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::kafka::Secret;

/// Where the registry is and how to reach it: the settings the producer and the processor share.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryArgs {
    /// The schema registry (Confluent's REST API), e.g. http://schema-registry:8081: the
    /// producer registers its Avro schema there; the processor fetches writer schemas by id
    /// (unset: the processor reads JSON only)
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// Basic auth `user:password` for the registry (never printed; user info in the URL works too)
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        hide_env_values = true
    )]
    pub schema_registry_basic_auth_user_info: Option<Secret>,
    /// The PEM file of the CA that signed the registry's certificate (https URLs; default: the
    /// Mozilla roots)
    #[arg(long, env = "SCHEMA_REGISTRY_SSL_CA_LOCATION", value_name = "PATH")]
    pub schema_registry_ssl_ca_location: Option<PathBuf>,
}

/// What the registry answered for a schema id.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The schema's text.
    Found(String),
    /// The registry does not know the id (HTTP 404).
    Unknown,
}

/// A client of one registry.
pub struct Registry {
    /// The URL without user info and without a trailing `/`.
    base: String,
    authorization: Option<String>,
    agent: ureq::Agent,
}

impl Registry {
    /// The client of `args.schema_registry_url`, `None` when it is unset; an error for a URL or
    /// CA file that cannot be used.
    pub fn from_args(args: &RegistryArgs) -> Result<Option<Registry>, String> {
        let Some(url) = args
            .schema_registry_url
            .as_deref()
            .filter(|u| !u.is_empty())
        else {
            return Ok(None);
        };
        let (base, user_info) = split_user_info(url)?;
        let user_info = args
            .schema_registry_basic_auth_user_info
            .as_ref()
            .map(|s| s.0.clone())
            .or(user_info);
        let authorization = user_info.map(|u| {
            use base64_lite::encode;
            format!("Basic {}", encode(u.as_bytes()))
        });
        let mut config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false);
        if let Some(path) = &args.schema_registry_ssl_ca_location {
            let pem = std::fs::read(path)
                .map_err(|e| format!("SCHEMA_REGISTRY_SSL_CA_LOCATION {}: {e}", path.display()))?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("SCHEMA_REGISTRY_SSL_CA_LOCATION {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "SCHEMA_REGISTRY_SSL_CA_LOCATION {}: no certificate in the file",
                    path.display()
                ));
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
                    .build(),
            );
        }
        Ok(Some(Registry {
            base,
            authorization,
            agent: config.build().into(),
        }))
    }

    /// The URL, without credentials.
    pub fn describe(&self) -> &str {
        &self.base
    }

    /// The schema of `id`: found, unknown, or an error when the registry cannot answer (down,
    /// refusing, a server error): the caller waits and asks again.
    pub fn schema(&self, id: u32) -> Result<Lookup, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let mut request = self.agent.get(&url);
        if let Some(a) = &self.authorization {
            request = request.header("Authorization", a);
        }
        let mut response = request.call().map_err(|e| self.failed("GET", &url, e))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.failed("GET", &url, e))?;
        match status {
            200 => {
                let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
                    RegistryError::Unavailable(format!("GET {url}: not JSON ({e}): {body:.200}"))
                })?;
                v.get("schema")
                    .and_then(|s| s.as_str())
                    .map(|s| Lookup::Found(s.to_string()))
                    .ok_or_else(|| {
                        RegistryError::Unavailable(format!("GET {url}: no schema in {body:.200}"))
                    })
            }
            // Confluent's "schema not found" (40403); any other 404 (a wrong path prefix, a
            // proxy) is not an answer about the id.
            404 if body.contains("40403") => Ok(Lookup::Unknown),
            401 | 403 => Err(RegistryError::Refused(refused_login(
                &self.base, status, &body,
            ))),
            _ => Err(RegistryError::Unavailable(format!(
                "GET {url}: HTTP {status}: {body:.200}"
            ))),
        }
    }

    /// A request that got no answer: a TLS handshake that failed (an untrusted certificate) is
    /// refused, as no retry fixes it; anything else (refused, reset, timed out) is unavailable.
    fn failed(&self, method: &str, url: &str, e: ureq::Error) -> RegistryError {
        let tls = match &e {
            ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
            ureq::Error::Tls(_) | ureq::Error::Pem(_) | ureq::Error::TlsRequired => true,
            _ => false,
        };
        if tls {
            RegistryError::Refused(format!(
                "no TLS connection to the schema registry at {}: {e} (is SCHEMA_REGISTRY_SSL_CA_LOCATION the CA that signed its certificate?)",
                self.base
            ))
        } else {
            RegistryError::Unavailable(format!("{method} {url}: {e}"))
        }
    }

    /// Registers `schema` (Avro) under `subject` and returns its id (the existing one when the
    /// subject has it already). An error says what the registry answered: an incompatible
    /// schema (409) or a refused login (401/403) is not retried by callers.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{subject}/versions", self.base);
        let body = serde_json::json!({ "schema": schema }).to_string();
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/vnd.schemaregistry.v1+json");
        if let Some(a) = &self.authorization {
            request = request.header("Authorization", a);
        }
        let mut response = request
            .send(body.as_str())
            .map_err(|e| self.failed("POST", &url, e))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        match status {
            200 => serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("id")?.as_u64())
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| RegistryError::Refused(format!("POST {url}: no id in {text:.200}"))),
            401 | 403 => Err(RegistryError::Refused(refused_login(&self.base, status, &text))),
            409 | 422 => Err(RegistryError::Refused(format!(
                "the registry at {} refused the schema of subject {subject}: HTTP {status}: {text:.300}",
                self.base
            ))),
            _ => Err(RegistryError::Unavailable(format!(
                "POST {url}: HTTP {status}: {text:.200}"
            ))),
        }
    }
}

impl Registry {
    /// [`Registry::register`], waiting while the registry cannot answer (a warning every 10 s,
    /// retries with a backoff up to 5 s) until it does or `stop()` says to give up; `who` names
    /// the binary in the warnings.
    pub fn register_waiting(
        &self,
        subject: &str,
        schema: &str,
        who: &str,
        stop: &dyn Fn() -> bool,
    ) -> Result<u32, String> {
        let mut warned: Option<std::time::Instant> = None;
        let mut wait = Duration::from_millis(200);
        loop {
            match self.register(subject, schema) {
                Ok(id) => return Ok(id),
                Err(RegistryError::Refused(e)) => return Err(e),
                Err(RegistryError::Unavailable(e)) => {
                    if stop() {
                        return Err(format!(
                            "stopped before the schema registry registered subject {subject}: {e}"
                        ));
                    }
                    if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(
                            "[{who}] the schema registry cannot register subject {subject} ({e}); waiting and trying again"
                        );
                        warned = Some(std::time::Instant::now());
                    }
                    let until = std::time::Instant::now() + wait;
                    while std::time::Instant::now() < until && !stop() {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

fn refused_login(base: &str, status: u16, body: &str) -> String {
    let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    format!(
        "the schema registry at {base} refused the login: HTTP {status}: {body:.160} (SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO, or user info in SCHEMA_REGISTRY_URL)"
    )
}

/// Why the registry gave no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryError {
    /// The registry cannot answer now: asking again may work.
    Unavailable(String),
    /// The registry answered no (incompatible schema, refused login): asking again will not help.
    Refused(String),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::Unavailable(e) | RegistryError::Refused(e) => f.write_str(e),
        }
    }
}

/// `http://user:pass@host:port/path` → (`http://host:port/path`, `Some("user:pass")`).
fn split_user_info(url: &str) -> Result<(String, Option<String>), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "SCHEMA_REGISTRY_URL {:?} is not a URL (http://host:port)",
            url.rsplit('@').next().unwrap_or_default()
        ));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "SCHEMA_REGISTRY_URL: scheme {scheme:?} (http or https)"
        ));
    }
    // The last `@` ends the user info, even where a password holds a `/` it should have
    // percent-encoded: the password never stays in the URL that is printed.
    let (user_info, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(percent_decode(u)), r),
        None => (None, rest),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (host, path) = rest.split_at(authority_end);
    if host.is_empty() {
        return Err("SCHEMA_REGISTRY_URL has no host".into());
    }
    Ok((
        format!("{scheme}://{host}{}", path.trim_end_matches('/')),
        user_info,
    ))
}

/// `%XX` sequences decoded (a URL's user info); anything else kept as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A URL with any user info replaced by `***`, for messages.
pub fn strip_credentials(url: &str) -> String {
    match split_user_info(url) {
        Ok((base, Some(_))) => base.replacen("://", "://***@", 1),
        Ok((base, None)) => base,
        Err(_) => url.split('@').next_back().unwrap_or_default().to_string(),
    }
}

/// Base64 (standard alphabet, padded) for the basic auth header.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_taken_out_of_the_url_and_never_shown() {
        let (base, user) = split_user_info("https://ann:s3cret@reg.example:8081/").unwrap();
        assert_eq!(base, "https://reg.example:8081");
        assert_eq!(user.as_deref(), Some("ann:s3cret"));
        assert_eq!(
            strip_credentials("http://ann:s3cret@reg:8081"),
            "http://***@reg:8081"
        );
        // A `/` in the password, unencoded: still out of the printed URL; encoded: decoded.
        let (base, user) = split_user_info("http://ann:pa/ss@reg:8081/x").unwrap();
        assert_eq!(
            (base.as_str(), user.as_deref()),
            ("http://reg:8081/x", Some("ann:pa/ss"))
        );
        let (_, user) = split_user_info("http://ann:p%2Fs%40s@reg:8081").unwrap();
        assert_eq!(user.as_deref(), Some("ann:p/s@s"));
        assert!(split_user_info("reg:8081")
            .unwrap_err()
            .contains("not a URL"));
        assert!(split_user_info("ftp://reg").unwrap_err().contains("scheme"));
    }

    #[test]
    fn basic_auth_is_rfc_4648_base64() {
        assert_eq!(
            base64_lite::encode(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64_lite::encode(b"ab"), "YWI=");
        assert_eq!(base64_lite::encode(b"abc"), "YWJj");
    }

    #[test]
    fn a_registry_that_does_not_listen_is_unavailable_not_unknown() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args = RegistryArgs {
            schema_registry_url: Some(format!("http://127.0.0.1:{port}")),
            ..Default::default()
        };
        let registry = Registry::from_args(&args).unwrap().unwrap();
        assert!(matches!(
            registry.schema(1),
            Err(RegistryError::Unavailable(_))
        ));
        assert!(matches!(
            registry.register("t-value", "\"string\""),
            Err(RegistryError::Unavailable(_))
        ));
    }
}
