//! Getting an artifact's bytes from a `file://` or `https://` reference; registry
//! references are pulled by [`crate::oci`].

use std::path::PathBuf;

use crate::error::{FetchError, PrepareError};
use crate::oci::Reference;

/// Where an image reference points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Url(Location),
    /// A reference without a scheme, as in any Kubernetes pod spec.
    Oci(Reference),
}

/// An artifact named by URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    File(PathBuf),
    Https(url::Url),
}

impl Source {
    pub(crate) fn parse(image: &str) -> Result<Source, PrepareError> {
        let unsupported = || PrepareError::UnsupportedReference {
            image: image.to_owned(),
        };
        // `localhost:5000/app` would parse as a URL with the scheme `localhost`.
        if !image.contains("://") {
            return Reference::parse(image)
                .map(Source::Oci)
                .ok_or_else(unsupported);
        }
        let url = url::Url::parse(image).map_err(|_| unsupported())?;
        match url.scheme() {
            "file" => {
                // `file://host/path` would silently drop the host; only local paths mean something.
                if url
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(unsupported());
                }
                let path = url.to_file_path().map_err(|()| unsupported())?;
                Ok(Source::Url(Location::File(path)))
            }
            "https" => Ok(Source::Url(Location::Https(url))),
            _ => Err(unsupported()),
        }
    }
}

/// Fetches with a size cap, so a wrong reference cannot fill the node's memory.
pub(crate) async fn fetch(
    location: &Location,
    client: &reqwest::Client,
    limit: u64,
) -> Result<Vec<u8>, FetchError> {
    match location {
        Location::File(path) => {
            let read_err = |source| FetchError::Read {
                path: path.clone(),
                source,
            };
            let meta = tokio::fs::metadata(path).await.map_err(read_err)?;
            if meta.len() > limit {
                return Err(FetchError::TooLarge { limit });
            }
            tokio::fs::read(path).await.map_err(read_err)
        }
        Location::Https(url) => {
            let http = |source| FetchError::Http { source };
            let mut response = client.get(url.clone()).send().await.map_err(http)?;
            let status = response.status();
            if !status.is_success() {
                return Err(FetchError::Status { status });
            }
            if response.content_length().is_some_and(|len| len > limit) {
                return Err(FetchError::TooLarge { limit });
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(http)? {
                if (bytes.len() + chunk.len()) as u64 > limit {
                    return Err(FetchError::TooLarge { limit });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_references() {
        assert_eq!(
            Source::parse("file:///srv/hello.wasm").unwrap(),
            Source::Url(Location::File(PathBuf::from("/srv/hello.wasm")))
        );
        assert!(matches!(
            Source::parse("https://example.com/a.wasm").unwrap(),
            Source::Url(Location::Https(_))
        ));
        for image in [
            "nginx:latest",
            "docker.io/library/nginx",
            "localhost:5000/a:v1",
        ] {
            assert!(
                matches!(Source::parse(image).unwrap(), Source::Oci(_)),
                "{image}"
            );
        }
    }

    #[test]
    fn rejects_other_references() {
        for image in [
            "Nginx:latest",
            "http://example.com/a.wasm",
            "file://otherhost/a.wasm",
            "ftp://example.com/a.wasm",
            "",
        ] {
            let err = Source::parse(image).unwrap_err();
            assert!(
                matches!(err, PrepareError::UnsupportedReference { .. }),
                "{image}: {err:?}"
            );
            assert!(err.is_pull_error());
        }
    }
}
