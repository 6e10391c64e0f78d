//! A small client for the read side of the OCI distribution API: manifests and
//! blobs, with the registry's `WWW-Authenticate` challenge answered by Basic
//! credentials or a Bearer token from the realm it names.

use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde::Deserialize;

use super::credentials::RegistryAuth;
use super::error::RegistryError;
use super::reference::Reference;
use crate::artifact;

/// Manifests are small JSON documents; anything bigger is not one.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// A fetched manifest: its bytes, their digest and the `Content-Type` sent with them.
pub(crate) struct Fetched {
    pub(crate) bytes: Vec<u8>,
    pub(crate) digest: String,
    pub(crate) content_type: Option<String>,
}

enum Authorization {
    Basic(RegistryAuth),
    Bearer(String),
}

/// One pull's conversation with one repository; it remembers the authorization
/// it earned so only the first request pays for the challenge.
pub(crate) struct Session<'a> {
    http: &'a reqwest::Client,
    reference: &'a Reference,
    base: String,
    credentials: Option<&'a RegistryAuth>,
    authorization: Option<Authorization>,
}

impl<'a> Session<'a> {
    pub(crate) fn new(
        http: &'a reqwest::Client,
        reference: &'a Reference,
        credentials: Option<&'a RegistryAuth>,
    ) -> Session<'a> {
        Session {
            http,
            reference,
            base: reference.api_base(),
            credentials,
            authorization: None,
        }
    }

    /// Gets a manifest by tag or digest and checks it against the digest it was
    /// asked by, or the `Docker-Content-Digest` the registry claims for a tag.
    pub(crate) async fn manifest(&mut self, target: &str) -> Result<Fetched, RegistryError> {
        let path = format!("manifests/{target}");
        let response = self.get(&path, Some(super::manifest::ACCEPT)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::ManifestNotFound {
                repository: format!("{}/{}", self.reference.registry, self.reference.repository),
                reference: target.to_string(),
            });
        }
        let response = self.successful(response)?;
        let claimed = header(&response, "docker-content-digest");
        let content_type = header(&response, CONTENT_TYPE.as_str());
        let bytes = read_limited(response, MAX_MANIFEST_BYTES, "manifest").await?;
        let digest = artifact::digest(&bytes);
        let expected = if target.starts_with("sha256:") {
            Some(target.to_string())
        } else {
            claimed.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                expected,
                actual: digest,
            });
        }
        Ok(Fetched {
            bytes,
            digest,
            content_type,
        })
    }

    /// Downloads a blob and checks its size and digest against its descriptor.
    pub(crate) async fn blob(
        &mut self,
        digest: &str,
        size: u64,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if size > limit {
            return Err(RegistryError::TooLarge {
                what: "wasm layer",
                limit,
            });
        }
        let response = self.get(&format!("blobs/{digest}"), None).await?;
        let response = self.successful(response)?;
        // Reading one byte past the declared size is enough to know it is wrong.
        let bytes = read_limited(response, size.saturating_add(1), "wasm layer").await;
        let bytes = match bytes {
            Err(RegistryError::TooLarge { .. }) => {
                return Err(RegistryError::SizeMismatch {
                    what: "wasm layer",
                    expected: size,
                    actual: size + 1,
                });
            }
            other => other?,
        };
        if bytes.len() as u64 != size {
            return Err(RegistryError::SizeMismatch {
                what: "wasm layer",
                expected: size,
                actual: bytes.len() as u64,
            });
        }
        let actual = artifact::digest(&bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: "wasm layer",
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    fn successful(&self, response: Response) -> Result<Response, RegistryError> {
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(RegistryError::Status {
                url: response.url().to_string(),
                status: response.status(),
            })
        }
    }

    async fn get(&mut self, path: &str, accept: Option<&str>) -> Result<Response, RegistryError> {
        let url = format!("{}/v2/{}/{path}", self.base, self.reference.repository);
        let response = self.send(&url, accept).await?;
        if response.status() != StatusCode::UNAUTHORIZED || self.authorization.is_some() {
            return Ok(response);
        }
        let challenge = header(&response, WWW_AUTHENTICATE.as_str()).unwrap_or_default();
        self.authorization = Some(self.authorize(&challenge).await?);
        let response = self.send(&url, accept).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized("refused the credentials"));
        }
        Ok(response)
    }

    async fn send(&self, url: &str, accept: Option<&str>) -> Result<Response, RegistryError> {
        let mut request = self.http.get(url);
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        request = match &self.authorization {
            Some(Authorization::Basic(auth)) => {
                request.basic_auth(&auth.username, Some(&auth.password))
            }
            Some(Authorization::Bearer(token)) => request.bearer_auth(token),
            None => request,
        };
        request
            .send()
            .await
            .map_err(|source| RegistryError::Request {
                url: url.to_string(),
                source,
            })
    }

    /// Answers a `WWW-Authenticate` challenge: Basic with the pod's credentials, or
    /// Bearer with a token from the realm (anonymous when there are no credentials).
    async fn authorize(&self, challenge: &str) -> Result<Authorization, RegistryError> {
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => match self.credentials {
                Some(auth) => Ok(Authorization::Basic(auth.clone())),
                None => {
                    Err(self.unauthorized("the pod's imagePullSecrets have no credentials for it"))
                }
            },
            "bearer" => {
                let param = |name: &str| {
                    params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.as_str())
                };
                let Some(realm) = param("realm") else {
                    return Err(self.unauthorized("its Bearer challenge names no realm"));
                };
                let scope = param("scope").map_or_else(
                    || format!("repository:{}:pull", self.reference.repository),
                    str::to_string,
                );
                let mut query = vec![("scope", scope.as_str())];
                if let Some(service) = param("service") {
                    query.push(("service", service));
                }
                self.token(realm, &query).await.map(Authorization::Bearer)
            }
            _ => Err(self.unauthorized(&format!(
                "its challenge {challenge:?} is neither Basic nor Bearer"
            ))),
        }
    }

    async fn token(&self, realm: &str, query: &[(&str, &str)]) -> Result<String, RegistryError> {
        #[derive(Deserialize)]
        struct TokenBody {
            token: Option<String>,
            access_token: Option<String>,
        }
        let failed = |source| RegistryError::Token {
            realm: realm.to_string(),
            source: Box::new(source),
        };
        let mut request = self.http.get(realm).query(query);
        if let Some(auth) = self.credentials {
            request = request.basic_auth(&auth.username, Some(&auth.password));
        }
        let response = request.send().await.map_err(|source| {
            failed(RegistryError::Request {
                url: realm.to_string(),
                source,
            })
        })?;
        let response = self.successful(response).map_err(failed)?;
        let body = read_limited(response, MAX_MANIFEST_BYTES, "token response")
            .await
            .map_err(failed)?;
        let body: TokenBody =
            serde_json::from_slice(&body).map_err(|_| RegistryError::TokenBody {
                realm: realm.to_string(),
            })?;
        body.token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::TokenBody {
                realm: realm.to_string(),
            })
    }

    fn unauthorized(&self, reason: &str) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.reference.registry.clone(),
            reason: reason.to_string(),
        }
    }
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn read_limited(
    mut response: Response,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge { what, limit };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let url = response.url().to_string();
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| RegistryError::Request {
            url: url.clone(),
            source,
        })?
    {
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Splits `Bearer realm="https://auth",service="reg",scope="repository:a:pull"`
/// into the scheme and its parameters; quoted values may hold commas.
fn parse_challenge(challenge: &str) -> (String, Vec<(String, String)>) {
    let challenge = challenge.trim();
    let (scheme, mut rest) = challenge
        .split_once(char::is_whitespace)
        .unwrap_or((challenge, ""));
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end..])
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            }
        };
        params.push((key.trim().to_string(), value));
        rest = remaining;
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        let expect = [
            ("realm", "https://auth.example/token"),
            ("service", "reg.example"),
            ("scope", "repository:a/b:pull,push"),
        ];
        let got: Vec<_> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn parses_basic_and_unquoted_challenges() {
        let (scheme, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(scheme, "Basic");
        assert_eq!(
            params,
            [("realm".to_string(), "Registry Realm".to_string())]
        );
        let (_, params) = parse_challenge(r#"Bearer realm=https://a/t, service = "x\"y""#);
        assert_eq!(params[0].1, "https://a/t");
        assert_eq!(params[1], ("service".to_string(), "x\"y".to_string()));
        assert_eq!(parse_challenge("").0, "");
    }
}
