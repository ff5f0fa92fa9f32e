//! Uploads whose bodies stream from the spool file.
//!
//! opendal's writer takes each part as bytes in memory and holds
//! `parallel_parts + 2` of them until their requests end: 48 MiB with the
//! default settings, in the PHP worker that exports. Here each request reads
//! its range of the file as it sends it, so an upload holds a read buffer
//! per request in flight, whatever the part size. The requests are signed by
//! the reqsign signers opendal itself uses; opendal still signs the download
//! URLs and answers `stat` and the readiness check.

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use http::{header, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{percent_encode, storage_error, with_causes, ObjectMeta};
use crate::error::{ExportError, Result};

/// What each request's body reads from the file at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What is read of a store's answer: only the error's code and message are
/// used, and an endpoint that is no store may send a whole page.
const ANSWER_LIMIT: usize = 64 * 1024;

/// Error codes S3 and OSS give to requests worth sending again, whatever
/// the status: `RequestTimeout` (400) is a part whose body came too slowly.
const RETRIED_CODES: [&str; 5] = [
    "RequestTimeout",
    "InternalError",
    "OperationAborted",
    "SlowDown",
    "ServiceUnavailable",
];

/// Signs requests as the store expects: SigV4 for S3, OSS's own for OSS.
pub(super) enum RequestSigner {
    S3(reqsign_core::Signer<reqsign_aws_v4::Credential>),
    Oss(reqsign_core::Signer<reqsign_aliyun_oss::Credential>),
}

impl RequestSigner {
    pub(super) fn s3(region: &str, key_id: &str, secret: &str, token: &str) -> Self {
        let mut credential = reqsign_aws_v4::StaticCredentialProvider::new(key_id, secret);
        if !token.is_empty() {
            credential = credential.with_session_token(token);
        }
        Self::S3(reqsign_core::Signer::new(
            reqsign_core::Context::new(),
            credential,
            reqsign_aws_v4::RequestSigner::new("s3", region),
        ))
    }

    pub(super) fn oss(bucket: &str, key_id: &str, secret: &str, token: &str) -> Self {
        let mut credential = reqsign_aliyun_oss::StaticCredentialProvider::new(key_id, secret);
        if !token.is_empty() {
            credential = credential.with_security_token(token);
        }
        Self::Oss(reqsign_core::Signer::new(
            reqsign_core::Context::new(),
            credential,
            reqsign_aliyun_oss::RequestSigner::new(bucket),
        ))
    }

    fn metadata_header(&self) -> &'static str {
        match self {
            Self::S3(_) => "x-amz-meta-sha256",
            Self::Oss(_) => "x-oss-meta-sha256",
        }
    }

    async fn sign(&self, parts: &mut http::request::Parts) -> reqsign_core::Result<()> {
        match self {
            Self::S3(signer) => signer.sign(parts, None).await,
            Self::Oss(signer) => signer.sign(parts, None).await,
        }
    }
}

/// Where an upload's requests go, and how they are signed.
pub(super) struct Target {
    pub signer: RequestSigner,
    /// The URL of the bucket's objects ([`bucket_url`]).
    pub bucket_url: String,
}

impl Target {
    /// `settings` names the endpoint's and bucket's keys, for the error.
    pub(super) fn new(
        signer: RequestSigner,
        (endpoint, bucket, virtual_host): (&str, &str, bool),
        settings: &str,
    ) -> Result<Self> {
        let bucket_url = bucket_url(endpoint, bucket, virtual_host).ok_or_else(|| {
            ExportError::invalid_option(format!(
                "{settings} do not make a URL: endpoint \"{endpoint}\", bucket \"{bucket}\""
            ))
        })?;
        Ok(Self { signer, bucket_url })
    }
}

/// An endpoint as reqwest sends it, for the uploads and for opendal's
/// signed URLs alike: `https://` when it names no scheme (as opendal takes
/// it), scheme and host in lower case, no default port, no slash at the
/// end. `HTTP://host` gave download URLs of `https://http//host`. Left as
/// written if it is no URL: [`Target::new`] names the settings then.
pub(super) fn normalized_endpoint(endpoint: &str) -> String {
    let endpoint = endpoint.trim().trim_end_matches('/');
    let with_scheme = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    };
    reqwest::Url::parse(&with_scheme).map_or_else(
        |_| endpoint.to_owned(),
        |url| url.as_str().trim_end_matches('/').to_owned(),
    )
}

/// The URL of the bucket's objects at a [`normalized_endpoint`]:
/// `{endpoint}/{bucket}/` (path style) or `{scheme}://{bucket}.{host}/`
/// (virtual host), as reqwest will send it, so that it is signed as sent.
/// `None` if that makes no URL.
pub(super) fn bucket_url(endpoint: &str, bucket: &str, virtual_host: bool) -> Option<String> {
    let (scheme, host) = endpoint.split_once("://")?;
    let bucket = bucket.trim();
    let url = if virtual_host {
        format!("{scheme}://{bucket}.{host}/")
    } else {
        format!("{scheme}://{host}/{bucket}/")
    };
    let url = reqwest::Url::parse(&url).ok()?;
    (url.has_host() && url.query().is_none()).then(|| url.into())
}

/// The URL of `key` in the bucket at `bucket_url`: every byte of the key
/// but the unreserved ones and `/` percent-encoded, the form both stores
/// sign.
pub(super) fn object_url(bucket_url: &str, key: &str) -> String {
    format!("{bucket_url}{}", percent_encode(key, b"-_.~/"))
}

/// One upload of one spool file to one key.
#[derive(Clone, Copy)]
pub(super) struct Upload<'a> {
    pub client: &'a reqwest::Client,
    pub signer: &'a RequestSigner,
    /// The object's URL, its key encoded ([`object_url`]).
    pub object_url: &'a str,
    pub spool: &'a Path,
    pub meta: &'a ObjectMeta,
    /// How long one request may take.
    pub attempt_timeout: Duration,
    pub max_retries: usize,
    /// Requests of this upload retried so far, for its error.
    pub retries: &'a AtomicU32,
    /// `oss://bucket` or `s3://bucket`, for the log.
    pub location: &'a str,
}

/// What a store answered to a request that succeeded.
struct Answer {
    etag: Option<String>,
    body: String,
}

/// A body: `len` bytes of the spool file from `offset`.
#[derive(Clone, Copy)]
enum Body<'a> {
    Empty,
    Text(&'a str),
    File { offset: u64, len: u64 },
}

/// A request that failed: whether sending it again may succeed.
struct Failure {
    error: ExportError,
    retry: bool,
}

impl Upload<'_> {
    /// The whole file in one PUT.
    pub async fn put(&self, size: u64) -> Result<()> {
        let request = self.object_request(Method::PUT, "", true)?;
        self.send(
            "PutObject",
            &request,
            Body::File {
                offset: 0,
                len: size,
            },
        )
        .await
        .map(drop)
    }

    /// Starts a multipart upload: its id.
    pub async fn initiate(&self) -> Result<String> {
        let request = self.object_request(Method::POST, "?uploads", true)?;
        let answer = self
            .send("InitiateMultipartUpload", &request, Body::Empty)
            .await?;
        xml_element(&answer.body, "UploadId").ok_or_else(|| {
            storage_error(
                "InitiateMultipartUpload",
                format!("no UploadId in the answer: {}", clip(&answer.body)),
            )
        })
    }

    /// Sends the file in parts of `part_size`, `parallel` at a time, calling
    /// `progress` with the bytes sent as each part ends. The parts' ETags,
    /// in order.
    pub async fn send_parts(
        &self,
        upload_id: &str,
        size: u64,
        part_size: u64,
        parallel: usize,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<String>> {
        let sent = AtomicU64::new(0);
        let parts = size.div_ceil(part_size);
        let mut etags = futures_util::stream::iter(0..parts)
            .map(|index| {
                let sent = &sent;
                async move {
                    let offset = index * part_size;
                    let len = part_size.min(size - offset);
                    let query = format!(
                        "?partNumber={}&uploadId={}",
                        index + 1,
                        query_value(upload_id)
                    );
                    let request = self.object_request(Method::PUT, &query, false)?;
                    let answer = self
                        .send("UploadPart", &request, Body::File { offset, len })
                        .await?;
                    let etag = answer
                        .etag
                        .ok_or_else(|| storage_error("UploadPart", "no ETag in the answer"))?;
                    progress(sent.fetch_add(len, Ordering::Relaxed) + len);
                    Ok((index, etag))
                }
            })
            // Unordered: a slow part holds its own slot only.
            .buffer_unordered(parallel.max(1))
            .try_collect::<Vec<_>>()
            .await?;
        etags.sort_unstable();
        Ok(etags.into_iter().map(|(_, etag)| etag).collect())
    }

    /// Completes a multipart upload from its parts' ETags.
    pub async fn complete(&self, upload_id: &str, etags: &[String]) -> Result<()> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (index, etag) in etags.iter().enumerate() {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                index + 1,
                escape_xml(etag)
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let query = format!("?uploadId={}", query_value(upload_id));
        let request = self.object_request(Method::POST, &query, false)?;
        self.send("CompleteMultipartUpload", &request, Body::Text(&xml))
            .await
            .map(drop)
    }

    /// Aborts a multipart upload, once: the caller bounds how long it waits.
    pub async fn abort(&self, upload_id: &str) -> Result<()> {
        let query = format!("?uploadId={}", query_value(upload_id));
        let request = self.object_request(Method::DELETE, &query, false)?;
        let once = Upload {
            max_retries: 0,
            ..*self
        };
        once.send("AbortMultipartUpload", &request, Body::Empty)
            .await
            .map(drop)
    }

    /// A request on the object; with `described`, it carries the object's
    /// type, disposition and checksum (PutObject, InitiateMultipartUpload).
    fn object_request(
        &self,
        method: Method,
        query: &str,
        described: bool,
    ) -> Result<http::request::Parts> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{query}", self.object_url));
        if described {
            request = request
                .header(header::CONTENT_TYPE, self.meta.content_type)
                .header(header::CONTENT_DISPOSITION, &self.meta.content_disposition)
                .header(self.signer.metadata_header(), &self.meta.sha256);
        }
        request
            .body(())
            .map(|r| r.into_parts().0)
            .map_err(|e| storage_error(&format!("a request to {}", self.object_url), e))
    }

    /// Sends a request, again while it fails in a way that may pass (no
    /// connection, no answer in time, 5xx, 408, 429, the codes in
    /// [`RETRIED_CODES`], an error in a 2xx answer), at most `max_retries`
    /// more times.
    async fn send(
        &self,
        operation: &str,
        request: &http::request::Parts,
        body: Body<'_>,
    ) -> Result<Answer> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        let mut first_failure: Option<String> = None;
        loop {
            match self.send_once(operation, request, body).await {
                Ok(answer) => return Ok(answer),
                Err(Failure { error, retry }) if retry && attempt < self.max_retries => {
                    attempt += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(location = %self.location, url = %self.object_url, operation, attempt, error = %error, "object store request failed: retrying");
                    first_failure.get_or_insert(error.message);
                    tokio::time::sleep(jittered(delay)).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(Failure { error, .. }) => {
                    // The first failure is often the cause, a retry's only
                    // its echo (a 500, then 403 for an upload id used up).
                    return Err(match first_failure.filter(|f| *f != error.message) {
                        Some(first) => {
                            let message = format!("{} (the first try: {first})", error.message);
                            error.reworded(message)
                        }
                        None => error,
                    });
                }
            }
        }
    }

    async fn send_once(
        &self,
        operation: &str,
        request: &http::request::Parts,
        body: Body<'_>,
    ) -> std::result::Result<Answer, Failure> {
        let fail = |error, retry| Failure { error, retry };
        let mut parts = request.clone();
        let length = match body {
            Body::Empty => 0,
            Body::Text(text) => text.len() as u64,
            Body::File { len, .. } => len,
        };
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        self.signer
            .sign(&mut parts)
            .await
            .map_err(|e| fail(storage_error(&format!("{operation}: signing"), e), false))?;
        // hyper writes the same host from the URL, which `bucket_url` made
        // the way reqwest sends it.
        parts.headers.remove(header::HOST);
        let end = body_end(body);
        let body = match body {
            Body::Empty => reqwest::Body::from(""),
            Body::Text(text) => reqwest::Body::from(text.to_owned()),
            Body::File { offset, len } => self
                .file_range(offset, len)
                .await
                .map_err(|e| fail(e, false))?,
        };
        let sent = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .timeout(self.attempt_timeout)
            .body(body)
            .send()
            .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) => return Err(self.unsent(operation, end, &e).await),
        };
        let status = answer.status();
        let etag = answer
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = read_answer(answer).await.map_err(|e| {
            let what = format!("{operation}: reading the answer");
            fail(storage_error(&what, with_causes(&e)), true)
        })?;
        // S3 may answer a CompleteMultipartUpload with 200 and an error in
        // the body.
        if status.is_success() && !text.contains("<Error>") {
            return Ok(Answer { etag, body: text });
        }
        let code = xml_element(&text, "Code");
        let message = xml_element(&text, "Message");
        let retry = status.is_server_error()
            || status.is_success()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || code.as_deref().is_some_and(|c| RETRIED_CODES.contains(&c));
        let detail = match (code, message) {
            (Some(code), Some(message)) => format!("{status}: {code}: {message}"),
            (Some(code), None) => format!("{status}: {code}"),
            _ => format!("{status}: {}", clip(&text)),
        };
        Err(fail(storage_error(operation, detail), retry))
    }

    /// Why a request got no answer, and whether to send it again: not when
    /// reqwest refused to build it, nor when the spool file no longer holds
    /// the body's bytes (each try would fail the same way).
    async fn unsent(&self, operation: &str, body_end: Option<u64>, e: &reqwest::Error) -> Failure {
        if e.is_timeout() && !e.is_connect() {
            let detail = format!(
                "no answer within {:.1} s (a request may take fluxo.upload_timeout / (fluxo.max_retries + 1); within that, what the parts in flight need at {} KiB/s, but 10 s at least)",
                self.attempt_timeout.as_secs_f32(),
                super::object::SLOWEST_UPLINK / 1024
            );
            return Failure {
                error: storage_error(operation, detail),
                retry: true,
            };
        }
        let file_changed = match body_end {
            Some(end) => tokio::fs::metadata(self.spool)
                .await
                .map_or(true, |m| m.len() < end),
            None => false,
        };
        if file_changed {
            let detail = format!(
                "the file {} changed while it was sent ({})",
                self.spool.display(),
                with_causes(e)
            );
            return Failure {
                error: storage_error(operation, detail),
                retry: false,
            };
        }
        Failure {
            error: storage_error(operation, with_causes(e)),
            retry: !e.is_builder(),
        }
    }

    /// `len` bytes of the spool file from `offset`, read as they are sent.
    async fn file_range(&self, offset: u64, len: u64) -> Result<reqwest::Body> {
        let cannot_read = |e| ExportError::io("cannot read", self.spool, e);
        let mut file = tokio::fs::File::open(self.spool)
            .await
            .map_err(cannot_read)?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(cannot_read)?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_CHUNK);
        Ok(reqwest::Body::wrap_stream(stream))
    }
}

/// Where a request's body ends in the spool file, if it is read from it.
fn body_end(body: Body<'_>) -> Option<u64> {
    match body {
        Body::File { offset, len } => Some(offset + len),
        Body::Empty | Body::Text(_) => None,
    }
}

/// A query value percent-encoded as SigV4 canonicalises it.
fn query_value(value: &str) -> String {
    percent_encode(value, b"-_.~")
}

/// The first [`ANSWER_LIMIT`] bytes of an answer's body, as text.
async fn read_answer(mut answer: reqwest::Response) -> reqwest::Result<String> {
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await? {
        let room = ANSWER_LIMIT - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == ANSWER_LIMIT {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `delay` scaled by a random factor in [0.5, 1.5), so that parts refused
/// together are not sent again together.
fn jittered(delay: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // Each RandomState has keys of its own, drawn from the system's source.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    delay.mul_f64(0.5 + (random % 1000) as f64 / 1000.0)
}

/// The text of the first `<name>` element, unescaped.
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(unescape_xml(&xml[start..start + len]))
}

fn unescape_xml(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// At most 300 characters of a store's answer, for a message.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(300) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls_follow_the_addressing_style_as_they_are_sent() {
        let url = |endpoint, bucket, virtual_host| {
            bucket_url(&normalized_endpoint(endpoint), bucket, virtual_host)
        };
        assert_eq!(
            url("http://127.0.0.1:8014/", "b", false).as_deref(),
            Some("http://127.0.0.1:8014/b/")
        );
        assert_eq!(
            url("https://oss-cn-hangzhou.aliyuncs.com", "b", true).as_deref(),
            Some("https://b.oss-cn-hangzhou.aliyuncs.com/")
        );
        assert_eq!(
            url("s3.eu-west-1.amazonaws.com", " b ", true).as_deref(),
            Some("https://b.s3.eu-west-1.amazonaws.com/")
        );
        // Signed as reqwest sends it: host in lower case, no default port.
        assert_eq!(
            url("HTTPS://S3.Example.com:443", "b", false).as_deref(),
            Some("https://s3.example.com/b/")
        );
        assert_eq!(url("http://my host", "b", false), None);
        assert_eq!(
            normalized_endpoint(" HTTP://MinIO.local:80/ "),
            "http://minio.local"
        );
        assert_eq!(
            normalized_endpoint("oss-cn-hangzhou.aliyuncs.com"),
            "https://oss-cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(normalized_endpoint("http://my host/"), "http://my host");
        assert_eq!(url("http://h:99999", "b", false), None);
    }

    #[test]
    fn keys_are_percent_encoded_but_for_slashes() {
        assert_eq!(
            object_url("http://h/b/", "exports/2026/订单 1+1.csv"),
            "http://h/b/exports/2026/%E8%AE%A2%E5%8D%95%201%2B1.csv"
        );
        assert_eq!(query_value("a/b+c"), "a%2Fb%2Bc");
    }

    #[test]
    fn xml_elements_are_read_unescaped() {
        let xml = "<Error><Code>SlowDown</Code><Message>a &amp; b</Message></Error>";
        assert_eq!(xml_element(xml, "Code").as_deref(), Some("SlowDown"));
        assert_eq!(xml_element(xml, "Message").as_deref(), Some("a & b"));
        assert_eq!(xml_element(xml, "UploadId"), None);
        assert_eq!(escape_xml("\"e&t\""), "&quot;e&amp;t&quot;");
    }
}
