//! Object stores (Alibaba Cloud OSS, S3-compatible). Uploads stream from
//! the spool file ([`multipart`]); Apache OpenDAL signs the download URLs,
//! reads an object's metadata and checks that the store answers.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use opendal::layers::{RetryEvent, RetryLayer, TimeoutLayer};
use opendal::{services, Operator};

use super::multipart::{self, RequestSigner, Target, Upload};
use super::{causes, storage_error, ObjectMeta, Store, StoredObject, Watch};
use crate::config::{OssSettings, S3Settings, StorageKind, UploadSettings};
use crate::error::{ErrorKind, ExportError, Result};

/// A runtime, the HTTP client of the uploads run on it (its pooled
/// connections live on the runtime), and the process that made them.
struct ProcessRuntime {
    pid: u32,
    runtime: Arc<tokio::runtime::Runtime>,
    client: reqwest::Client,
}

/// The tokio runtime of this process and the uploads' HTTP client, made on
/// first use (after any fork) and made again in a forked child. One client
/// per process keeps connections to the store open between exports.
fn runtime() -> (Arc<tokio::runtime::Runtime>, reqwest::Client) {
    static RUNTIME: OnceLock<Mutex<Option<ProcessRuntime>>> = OnceLock::new();
    let mut slot = RUNTIME
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    match slot.as_ref() {
        Some(current) if current.pid == pid => (current.runtime.clone(), current.client.clone()),
        _ => {
            let runtime = Arc::new(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("fluxo-io")
                    .enable_all()
                    .build()
                    .expect("cannot start the I/O runtime"),
            );
            // A redirect (S3's PermanentRedirect to the bucket's region) is
            // shown as the store's answer: a streamed body cannot be sent
            // again.
            let client = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("cannot start the HTTP client");
            let made = ProcessRuntime {
                pid,
                runtime: runtime.clone(),
                client: client.clone(),
            };
            if let Some(inherited) = slot.replace(made) {
                // A parent's runtime, copied by fork without its threads:
                // dropping it would wait for them for ever.
                std::mem::forget(inherited);
            }
            (runtime, client)
        }
    }
}

/// Whether an endpoint URL's host is an IP address or `localhost`.
fn is_ip_or_localhost(endpoint: &str) -> bool {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok()
}

/// The most parts a multipart upload may have, on S3 and on OSS.
const MAX_PARTS: u64 = 10_000;

/// The parts of a file of `file_size` bytes: of `part_size`, or bigger if
/// that would take more than [`MAX_PARTS`].
fn part_size_for(upload: &UploadSettings, file_size: u64) -> u64 {
    (upload.part_size as u64).max(file_size.div_ceil(MAX_PARTS))
}

/// The slowest uplink an upload should still get through, in bytes a second
/// (half a megabit: a congested office line, a link across the world).
pub(super) const SLOWEST_UPLINK: u64 = 64 * 1024;

/// How long one request may take before it is given up and retried: its
/// share of `fluxo.upload_timeout`, so that a stalled request is retried
/// before the whole upload runs out of time, and a request still in flight
/// is dropped at the deadline. Within that, 10 s, or longer when the parts
/// in flight, which share the link, take longer to send at
/// [`SLOWEST_UPLINK`]. A small file's requests keep the 10 s: a store that
/// stops answering is given up on soon. At 512 KiB/s, the floor before,
/// a 7 MB file could not be sent over a link of 300 KB/s whatever
/// `upload_timeout` said.
fn attempt_timeout(upload: &UploadSettings, part_size: u64, file_size: u64) -> Duration {
    let attempts = u32::try_from(upload.max_retries + 1).unwrap_or(u32::MAX);
    let in_flight = (upload.parallel_parts as u64 * part_size).min(file_size);
    let sending =
        Duration::from_secs(in_flight.div_ceil(SLOWEST_UPLINK)).max(Duration::from_secs(10));
    (upload.timeout / attempts).min(sending)
}

/// A store's error: opendal's message, which shows its direct source, then
/// the causes below that (a refused connection is named only there).
fn store_error(what: &str, err: &opendal::Error) -> ExportError {
    let below = std::error::Error::source(err).and_then(std::error::Error::source);
    storage_error(what, format!("{err}{}", causes(below)))
}

/// The endpoint setting `key`, [normalised](multipart::normalized_endpoint).
/// Written without a scheme it is taken as `https://`, the way cloud
/// endpoints are written (`oss-cn-hangzhou.aliyuncs.com`), unless it names a
/// port: `minio:9000` is most often a plain-HTTP store, and taking it as
/// https failed every upload with a TLS error that never named the setting.
fn endpoint(value: &str, key: &str) -> Result<String> {
    let value = required(value, key)?.trim();
    let port = (!value.contains("://"))
        .then(|| reqwest::Url::parse(&format!("https://{value}")).ok())
        .flatten()
        .and_then(|url| url.port());
    if let Some(port) = port {
        let host = value.trim_end_matches('/');
        return Err(ExportError::invalid_option(format!(
            "fluxo.{key} \"{value}\" names a port ({port}) but no scheme: write http://{host} or https://{host}"
        )));
    }
    Ok(multipart::normalized_endpoint(value))
}

fn required<'a>(value: &'a str, key: &str) -> Result<&'a str> {
    if value.trim().is_empty() {
        let or_region = if key == "oss_endpoint" {
            " (nor fluxo.oss_region, which gives the region's public endpoint)"
        } else {
            ""
        };
        Err(ExportError::invalid_option(format!(
            "fluxo.{key} is not set{or_region}; it is required for this storage: set it in php.ini, in the server's --config file or as {}",
            crate::config::env_names(key).join(" or ")
        )))
    } else {
        Ok(value)
    }
}

pub struct ObjectStore {
    /// Without timeout and retries: [`ObjectStore::operator`] adds them.
    base: Operator,
    /// Where uploads go, and how they are signed.
    target: Target,
    kind: StorageKind,
    /// OSS: signed URLs on this domain (bound to the bucket) as `domain/key`.
    download_domain: Option<String>,
    /// The bucket's path prefix in signed URLs (path-style addressing).
    bucket_path: Option<String>,
    /// `oss://bucket` or `s3://bucket`, for messages.
    location: String,
    upload: UploadSettings,
    url_expires: Duration,
}

impl ObjectStore {
    pub fn oss(oss: &OssSettings, upload: &UploadSettings) -> Result<Self> {
        // With only a region, the public endpoint of that region.
        let endpoint = if oss.endpoint.trim().is_empty() && !oss.region.trim().is_empty() {
            format!("https://oss-{}.aliyuncs.com", oss.region.trim())
        } else {
            endpoint(&oss.endpoint, "oss_endpoint")?
        };
        let mut builder = services::Oss::default()
            .endpoint(&endpoint)
            .bucket(required(&oss.bucket, "oss_bucket")?)
            .access_key_id(required(&oss.access_key_id, "oss_access_key_id")?)
            .access_key_secret(required(
                oss.access_key_secret.expose(),
                "oss_access_key_secret",
            )?);
        if !oss.security_token.is_empty() {
            builder = builder.security_token(oss.security_token.expose());
        }
        // An IP or localhost cannot carry the bucket as a subdomain: address
        // it path style, as Alibaba's own SDK does.
        let style = if is_ip_or_localhost(&endpoint) {
            "path"
        } else {
            "virtual"
        };
        builder = builder
            .addressing_style(style)
            .presign_addressing_style(style);
        let signer = RequestSigner::oss(
            &oss.bucket,
            &oss.access_key_id,
            oss.access_key_secret.expose(),
            oss.security_token.expose(),
        );
        let target = Target::new(
            signer,
            (&endpoint, &oss.bucket, style == "virtual"),
            "fluxo.oss_endpoint (or fluxo.oss_region) and fluxo.oss_bucket",
        )?;
        let mut store = Self::new(
            builder,
            target,
            StorageKind::Oss,
            format!("oss://{}", oss.bucket),
            upload,
            100 * 1024,
        )?;
        // OSS V1 signs /bucket/key, not the host: a URL signed for the
        // endpoint stays valid on a domain bound to the bucket.
        let domain = oss.download_domain.trim().trim_end_matches('/');
        if !domain.is_empty() {
            store.download_domain = Some(domain.to_owned());
            store.bucket_path = (style == "path").then(|| format!("/{}", oss.bucket));
        }
        Ok(store)
    }

    pub fn s3(s3: &S3Settings, upload: &UploadSettings) -> Result<Self> {
        let endpoint = endpoint(&s3.endpoint, "s3_endpoint")?;
        let mut builder = services::S3::default()
            .endpoint(&endpoint)
            .bucket(required(&s3.bucket, "s3_bucket")?)
            .region(required(&s3.region, "s3_region")?)
            .access_key_id(required(&s3.access_key_id, "s3_access_key_id")?)
            .secret_access_key(required(
                s3.secret_access_key.expose(),
                "s3_secret_access_key",
            )?)
            // Our settings are the configuration: no ~/.aws files, no IMDS.
            .disable_config_load();
        if !s3.session_token.is_empty() {
            builder = builder.session_token(s3.session_token.expose());
        }
        if s3.virtual_host {
            builder = builder.enable_virtual_host_style();
        }
        let signer = RequestSigner::s3(
            &s3.region,
            &s3.access_key_id,
            s3.secret_access_key.expose(),
            s3.session_token.expose(),
        );
        let target = Target::new(
            signer,
            (&endpoint, &s3.bucket, s3.virtual_host),
            if s3.virtual_host {
                "fluxo.s3_endpoint and fluxo.s3_bucket (with fluxo.s3_virtual_host = 1 the bucket goes in the host name, which an IP address cannot take)"
            } else {
                "fluxo.s3_endpoint and fluxo.s3_bucket"
            },
        )?;
        Self::new(
            builder,
            target,
            StorageKind::S3,
            format!("s3://{}", s3.bucket),
            upload,
            5 * 1024 * 1024,
        )
    }

    fn new(
        builder: impl opendal::Builder,
        target: Target,
        kind: StorageKind,
        location: String,
        upload: &UploadSettings,
        min_part: usize,
    ) -> Result<Self> {
        if upload.part_size < min_part {
            return Err(ExportError::invalid_option(format!(
                "fluxo.part_size must be at least {min_part} bytes for {location}"
            )));
        }
        // Registers the reqwest transport once per process; later calls are no-ops.
        opendal::install_default();
        let base = Operator::new(builder)
            .map_err(|e| ExportError::invalid_option(format!("{location}: {e}")))?;
        Ok(Self {
            base,
            target,
            kind,
            download_domain: None,
            bucket_path: None,
            location,
            upload: upload.clone(),
            url_expires: upload.url_expires,
        })
    }

    /// The store with the timeout and retries of a request without a body
    /// (see [`attempt_timeout`]).
    fn operator(&self) -> Operator {
        let location = self.location.clone();
        self.base
            .clone()
            .layer(TimeoutLayer::new().with_io_timeout(attempt_timeout(&self.upload, 0, 0)))
            .layer(
                RetryLayer::new()
                    .with_max_times(self.upload.max_retries)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .with_jitter()
                    .with_notify(move |event: RetryEvent<'_>| {
                        tracing::warn!(location = %location, operation = %event.op, attempt = event.attempt, error = %event.err, "object store request failed: retrying");
                    }),
            )
    }

    pub fn with_url_expires(mut self, expires: Duration) -> Self {
        self.url_expires = expires;
        self
    }

    /// Uploads the spool file: in one request when it fits in a part, else
    /// in parts. Past `fluxo.upload_timeout` the requests in flight are
    /// dropped and a multipart upload is aborted.
    async fn upload(
        &self,
        client: &reqwest::Client,
        spool: &Path,
        key: &str,
        meta: &ObjectMeta,
        watch: &Watch<'_>,
    ) -> Result<String> {
        let deadline = tokio::time::Instant::now() + self.upload.timeout;
        // This upload's retries, for its error.
        let retries = AtomicU32::new(0);
        let stored = async {
            let size = tokio::fs::metadata(spool)
                .await
                .map_err(|e| ExportError::io("cannot read", spool, e))?
                .len();
            let part_size = part_size_for(&self.upload, size);
            let object_url = multipart::object_url(&self.target.bucket_url, key);
            let upload = Upload {
                client,
                signer: &self.target.signer,
                object_url: &object_url,
                spool,
                meta,
                attempt_timeout: attempt_timeout(&self.upload, part_size, size),
                max_retries: self.upload.max_retries,
                retries: &retries,
                location: &self.location,
            };
            if size <= part_size {
                let put = self
                    .within(deadline, watch, "PutObject", upload.put(size))
                    .await;
                self.or_stored(put, key, meta).await?;
            } else {
                self.send_in_parts(&upload, key, size, part_size, watch, deadline)
                    .await?;
            }
            (watch.progress)(size);
            Ok::<_, ExportError>(())
        };
        if let Err(e) = stored.await {
            let mut message = format!("upload to {}/{key} failed: {}", self.location, e.message);
            let retries = retries.load(Ordering::Relaxed);
            if retries > 0 {
                message.push_str(&format!(
                    " (after {retries} retries in all, at most fluxo.max_retries = {} per request)",
                    self.upload.max_retries
                ));
            }
            // rustls's words for a certificate no CA this host trusts signed.
            if message.contains("invalid peer certificate: UnknownIssuer") {
                message.push_str(
                    "; a store whose certificate comes from a private CA needs that CA in this \
                     host's trust store (update-ca-certificates), or in the file SSL_CERT_FILE names",
                );
            }
            return Err(e.reworded(message));
        }
        let signed = self
            .base
            .presign_read_with(key, self.url_expires)
            .override_content_disposition(&meta.content_disposition)
            .await
            .map_err(|e| store_error(&format!("signing a URL for {}/{key}", self.location), &e))?;
        Ok(self.public_url(signed.uri().to_string()))
    }

    /// A multipart upload, aborted if it fails.
    async fn send_in_parts(
        &self,
        upload: &Upload<'_>,
        key: &str,
        size: u64,
        part_size: u64,
        watch: &Watch<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<()> {
        let upload_id = self
            .within(
                deadline,
                watch,
                "InitiateMultipartUpload",
                upload.initiate(),
            )
            .await?;
        let parts = upload.send_parts(
            &upload_id,
            size,
            part_size,
            self.upload.parallel_parts,
            watch.progress,
        );
        let sent = match self.within(deadline, watch, "UploadPart", parts).await {
            Ok(etags) => {
                let completed = self
                    .within(
                        deadline,
                        watch,
                        "CompleteMultipartUpload",
                        upload.complete(&upload_id, &etags),
                    )
                    .await;
                // A retried Complete is refused once the first took effect.
                self.or_stored(completed, key, upload.meta).await
            }
            Err(e) => Err(e),
        };
        if sent.is_err() {
            // No partial object may stay visible, nor parts billed forever.
            let aborted =
                tokio::time::timeout(Duration::from_secs(30), upload.abort(&upload_id)).await;
            if !matches!(aborted, Ok(Ok(()))) {
                // Its parts stay billed until a lifecycle rule removes them.
                let why = match aborted {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer within 30 s".to_owned(),
                };
                tracing::warn!(location = %self.location, key, error = %why, "the failed multipart upload could not be aborted");
            }
        }
        sent
    }

    /// `sent`, or done if it failed but the store holds the object as this
    /// upload wrote it: the last request took effect, but its answer came
    /// too late (or never). Without this the export failed with the object
    /// stored, and a caller's retry stored a second copy.
    async fn or_stored(&self, sent: Result<()>, key: &str, meta: &ObjectMeta) -> Result<()> {
        match sent {
            // Stopped: the export ends as its producer said, with no object,
            // even if its last request took effect as it was stopped.
            Err(e) if e.kind == ErrorKind::Cancelled => {
                // Briefly: a process that stops its exports at exit waits
                // for them only so long (task::wait_for_running).
                if self.holds(key, meta, Duration::from_secs(3)).await {
                    let deleted =
                        tokio::time::timeout(Duration::from_secs(10), self.base.delete(key)).await;
                    if !matches!(deleted, Ok(Ok(()))) {
                        tracing::warn!(location = %self.location, key, "the object of a stopped upload could not be deleted");
                    }
                }
                Err(e)
            }
            Err(e) if self.holds(key, meta, Duration::from_secs(10)).await => {
                tracing::warn!(location = %self.location, key, error = %e, "the upload's last request failed, but the store holds the whole object");
                Ok(())
            }
            sent => sent,
        }
    }

    /// `sending` (the requests of `operation`), given up on at `deadline`,
    /// or as soon as the export stops (asked every 100 ms).
    async fn within<T>(
        &self,
        deadline: tokio::time::Instant,
        watch: &Watch<'_>,
        operation: &str,
        sending: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let stopped = async {
            while !(watch.stopped)() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            biased;
            sent = tokio::time::timeout_at(deadline, sending) => sent.unwrap_or_else(|_| {
                Err(storage_error(
                    operation,
                    format!(
                        "not finished within fluxo.upload_timeout ({} s)",
                        self.upload.timeout.as_secs()
                    ),
                ))
            }),
            () = stopped => Err(ExportError::cancelled()),
        }
    }
}

impl ObjectStore {
    /// Whether the store holds `key` as this upload wrote it: its SHA-256
    /// in the metadata (each export has a key of its own). One request, not
    /// retried nor counted among the upload's retries, for `patience` at
    /// most: a store that stopped answering is not waited for again.
    async fn holds(&self, key: &str, meta: &ObjectMeta, patience: Duration) -> bool {
        let asked = tokio::time::timeout(patience, self.base.stat(key)).await;
        asked.is_ok_and(|stat| {
            stat.is_ok_and(|stored| {
                stored
                    .user_metadata()
                    .and_then(|m| m.get("sha256"))
                    .is_some_and(|sha256| *sha256 == meta.sha256)
            })
        })
    }

    /// The signed URL as users get it: on the download domain if one is set.
    fn public_url(&self, signed: String) -> String {
        let Some(domain) = &self.download_domain else {
            return signed;
        };
        let after_scheme = signed.split_once("://").map_or(signed.as_str(), |(_, r)| r);
        let path_and_query = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
        let path = self
            .bucket_path
            .as_deref()
            .and_then(|bucket| path_and_query.strip_prefix(bucket))
            .unwrap_or(path_and_query);
        format!("{domain}{path}")
    }
}

impl Store for ObjectStore {
    fn put_file(
        &self,
        spool: &Path,
        key: &str,
        meta: &ObjectMeta,
        watch: &Watch<'_>,
    ) -> Result<StoredObject> {
        let started = Instant::now();
        let (runtime, client) = runtime();
        let url = runtime.block_on(self.upload(&client, spool, key, meta, watch))?;
        tracing::info!(key, location = %self.location, ms = started.elapsed().as_millis() as u64, "uploaded");
        Ok(StoredObject {
            url,
            path: None,
            key: key.to_owned(),
        })
    }

    fn kind(&self) -> StorageKind {
        self.kind
    }

    fn check(&self) -> Result<()> {
        let answered = runtime().0.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), self.operator().check()).await
        });
        match answered {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let answered = matches!(
                    e.kind(),
                    opendal::ErrorKind::PermissionDenied | opendal::ErrorKind::NotFound
                );
                let what = if answered {
                    "refused to list one key (the readiness check: the credentials need the list permission too)"
                } else {
                    "does not answer"
                };
                Err(store_error(&format!("{} {what}", self.location), &e))
            }
            Err(_) => Err(storage_error(&self.location, "no answer within 5 s")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, Settings};

    fn oss(endpoint: &str, region: &str) -> OssSettings {
        OssSettings {
            endpoint: endpoint.into(),
            region: region.into(),
            bucket: "b".into(),
            access_key_id: "id".into(),
            access_key_secret: Secret::from("secret"),
            ..Default::default()
        }
    }

    #[test]
    fn ip_and_localhost_endpoints_are_recognised() {
        for yes in [
            "http://127.0.0.1:8016",
            "localhost",
            "https://[::1]:9000/x",
            "10.0.0.2",
        ] {
            assert!(is_ip_or_localhost(yes), "{yes}");
        }
        for no in [
            "https://oss-cn-hangzhou.aliyuncs.com",
            "http://minio.local:9000",
        ] {
            assert!(!is_ip_or_localhost(no), "{no}");
        }
    }

    #[test]
    fn every_attempt_fits_in_the_upload_timeout() {
        let mut upload = Settings::default().upload;
        let big = u64::MAX;
        let part = upload.part_size as u64;
        // A quarter of the default 600 s.
        assert_eq!(
            attempt_timeout(&upload, part, big),
            Duration::from_secs(150)
        );
        upload.timeout = Duration::from_secs(3600);
        // Four 8 MiB parts in flight at 64 KiB/s.
        assert_eq!(
            attempt_timeout(&upload, part, big),
            Duration::from_secs(512)
        );
        assert_eq!(
            attempt_timeout(&upload, part, 20 << 20),
            Duration::from_secs(320),
            "20 MiB"
        );
        assert_eq!(
            attempt_timeout(&upload, part, 70_000),
            Duration::from_secs(10),
            "a small file"
        );
        upload.parallel_parts = 3;
        assert_eq!(
            attempt_timeout(&upload, 5 << 20, big),
            Duration::from_secs(240)
        );
        assert_eq!(
            attempt_timeout(&upload, 100 << 10, big),
            Duration::from_secs(10),
            "10 s at least"
        );
        upload.timeout = Duration::from_secs(3);
        upload.max_retries = 2;
        assert_eq!(attempt_timeout(&upload, part, big), Duration::from_secs(1));
    }

    #[test]
    fn a_file_too_big_for_ten_thousand_parts_gets_bigger_parts() {
        let mut upload = Settings::default().upload;
        upload.part_size = 100 << 10;
        assert_eq!(part_size_for(&upload, 500 << 20), 100 << 10, "5,120 parts");
        // 1 GiB would take 10,486 parts of 100 KiB.
        let bigger = part_size_for(&upload, 1 << 30);
        assert_eq!(bigger, 107_375);
        assert_eq!((1u64 << 30).div_ceil(bigger), MAX_PARTS);
    }

    #[test]
    fn an_oss_region_alone_gives_the_endpoint() {
        let upload = Settings::default().upload;
        assert!(ObjectStore::oss(&oss("", "cn-hangzhou"), &upload).is_ok());
        let err = ObjectStore::oss(&oss("", ""), &upload).err().unwrap();
        assert!(err.message.contains("fluxo.oss_endpoint"), "{err}");
        assert!(
            err.message
                .ends_with("or as FLUXO_OSS_ENDPOINT or OSS_ENDPOINT"),
            "every variable read for it: {err}"
        );
    }

    #[test]
    fn parts_below_the_store_minimum_are_refused() {
        let mut upload = Settings::default().upload;
        upload.part_size = 1 << 20;
        let s3 = S3Settings {
            endpoint: "http://127.0.0.1:1".into(),
            bucket: "b".into(),
            region: "us-east-1".into(),
            access_key_id: "id".into(),
            secret_access_key: Secret::from("secret"),
            ..Default::default()
        };
        let err = ObjectStore::s3(&s3, &upload).err().unwrap();
        assert!(
            err.message
                .contains("fluxo.part_size must be at least 5242880"),
            "{err}"
        );
        assert!(ObjectStore::oss(&oss("http://127.0.0.1:1", ""), &upload).is_ok());
    }

    #[test]
    fn an_endpoint_with_a_port_must_name_its_scheme() {
        let upload = Settings::default().upload;
        for written in ["127.0.0.1:8014", "minio:9000/", "[::1]:9000"] {
            let err = ObjectStore::oss(&oss(written, ""), &upload).err().unwrap();
            assert_eq!(err.kind, ErrorKind::InvalidOption);
            let host = written.trim_end_matches('/');
            assert!(
                err.message
                    .contains(&format!("fluxo.oss_endpoint \"{written}\" names a port"))
                    && err
                        .message
                        .contains(&format!("write http://{host} or https://{host}")),
                "{err}"
            );
        }
        for fine in [
            "oss-cn-hangzhou.aliyuncs.com",
            "http://127.0.0.1:8014",
            "HTTPS://minio:9000",
            "minio:443",
        ] {
            assert!(ObjectStore::oss(&oss(fine, ""), &upload).is_ok(), "{fine}");
        }
    }

    #[test]
    fn settings_that_make_no_url_are_named_when_the_store_opens() {
        let upload = Settings::default().upload;
        let s3 = S3Settings {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "b".into(),
            region: "us-east-1".into(),
            access_key_id: "id".into(),
            secret_access_key: Secret::from("secret"),
            virtual_host: true,
            ..Default::default()
        };
        let err = ObjectStore::s3(&s3, &upload).err().unwrap();
        assert_eq!(err.kind, ErrorKind::InvalidOption);
        assert!(err.message.contains("fluxo.s3_virtual_host = 1"), "{err}");
        let err = ObjectStore::oss(&oss("https://oss cn.example.com", ""), &upload)
            .err()
            .unwrap();
        assert!(err.message.contains("fluxo.oss_endpoint"), "{err}");
    }
}
