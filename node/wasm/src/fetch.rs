//! Getting an artifact's bytes from an image reference.

use std::path::PathBuf;

use crate::error::{FetchError, PrepareError};

/// Where an image reference points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    File(PathBuf),
    Https(url::Url),
}

impl Source {
    pub(crate) fn parse(image: &str) -> Result<Source, PrepareError> {
        let unsupported = || PrepareError::UnsupportedReference {
            image: image.to_owned(),
        };
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
                Ok(Source::File(path))
            }
            "https" => Ok(Source::Https(url)),
            _ => Err(unsupported()),
        }
    }
}

/// Fetches with a size cap, so a wrong reference cannot fill the node's memory.
pub(crate) async fn fetch(
    source: &Source,
    client: &reqwest::Client,
    limit: u64,
) -> Result<Vec<u8>, FetchError> {
    match source {
        Source::File(path) => {
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
        Source::Https(url) => {
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
            Source::File(PathBuf::from("/srv/hello.wasm"))
        );
        assert!(matches!(
            Source::parse("https://example.com/a.wasm").unwrap(),
            Source::Https(_)
        ));
    }

    #[test]
    fn rejects_other_references() {
        for image in [
            "nginx:latest",
            "docker.io/library/nginx",
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
