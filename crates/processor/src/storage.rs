//! Object storage (`OUTPUT_PATH=s3://bucket/prefix`, `CHECKPOINT_DIR=s3://...`): the `s3`
//! scheme registered with delta-rs, the uploads and reads of layer files, and the checkpoint's
//! entries.
//!
//! The S3 client is `object_store`'s, configured by the usual `AWS_*` variables
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, ...). A Delta log
//! entry is written with a conditional put (`If-None-Match: *`), which S3 and the S3-compatible
//! servers that implement it make atomic: two writers of one version cannot both win, so no
//! locking service (DynamoDB) is needed.

use std::path::Path;
use std::sync::{Arc, Once};

use bytes::Bytes;
use deltalake_core::logstore::{
    default_logstore, logstore_factories, object_store_factories, LogStore, LogStoreFactory,
    ObjectStoreFactory, ObjectStoreRef, StorageConfig,
};
use deltalake_core::DeltaResult;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use url::Url;

use crate::error::{IoContext as _, Result, StorageContext as _};

/// An S3 client for `url`'s bucket, from the `AWS_*` variables and `options` (delta-rs's
/// storage options, same keys).
fn s3_client<'a>(
    url: &Url,
    options: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> object_store::Result<object_store::aws::AmazonS3> {
    let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
    for (key, value) in options {
        if let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(key, value.clone());
        }
    }
    builder.build()
}

struct S3Stores;

impl ObjectStoreFactory for S3Stores {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, object_store::path::Path)> {
        let store: ObjectStoreRef = Arc::new(s3_client(url, config.raw())?);
        Ok((store, Key::from_url_path(url.path())?))
    }
}

/// Delta-rs's own log store: commits are conditional puts.
struct S3Logs;

impl LogStoreFactory for S3Logs {
    fn with_options(
        &self,
        prefixed: ObjectStoreRef,
        root: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed, root, location, options))
    }
}

/// Makes `s3://` (and `s3a://`) tables known to delta-rs (once per process).
pub fn register_s3() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3://", "s3a://"] {
            let url = Url::parse(scheme).expect("a scheme URL");
            object_store_factories().insert(url.clone(), Arc::new(S3Stores));
            logstore_factories().insert(url, Arc::new(S3Logs));
        }
    });
}

/// The output's bucket and prefix: layer files are uploaded there and read back. Each call
/// waits for its request (the object store client retries transient failures itself).
pub struct Remote {
    url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    pub fn open(url: &Url) -> Result<Self> {
        let store = s3_client(url, std::iter::empty())
            .storage_context(|| format!("cannot use {url} (check the AWS_* settings)"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .io_context(|| "cannot start the object storage client's runtime".into())?;
        Ok(Remote {
            url: url.clone(),
            store: Arc::new(store),
            prefix: Key::from_url_path(url.path()).map_err(|e| {
                crate::error::Error::Config(format!("{url}: not a valid object store prefix: {e}"))
            })?,
            runtime,
        })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `relative` (`silver/date=2025-11-07/x.parquet`) under the output's prefix.
    fn key(&self, relative: &str) -> Key {
        relative
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |key, part| key.clone().join(part))
    }

    /// Uploads a local file to `relative` (one PUT: whole, or not at all), and returns its size.
    pub fn put_file(&self, local: &Path, relative: &str) -> Result<u64> {
        let bytes = Bytes::from(
            std::fs::read(local).io_context(|| format!("cannot read {}", local.display()))?,
        );
        let size = bytes.len() as u64;
        let key = self.key(relative);
        self.runtime
            .block_on(self.store.put(&key, PutPayload::from(bytes)))
            .storage_context(|| {
                format!("cannot upload {} to {}", local.display(), self.show(&key))
            })?;
        Ok(size)
    }

    /// An object's content; `None` when there is none.
    pub fn read(&self, relative: &str) -> Result<Option<Bytes>> {
        let key = self.key(relative);
        let got = self
            .runtime
            .block_on(async { self.store.get(&key).await?.bytes().await });
        match got {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).storage_context(|| format!("cannot read {}", self.show(&key))),
        }
    }

    /// Writes an object whole (replacing one of the same name).
    pub fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<()> {
        let key = self.key(relative);
        self.runtime
            .block_on(self.store.put(&key, PutPayload::from(bytes)))
            .storage_context(|| format!("cannot write {}", self.show(&key)))?;
        Ok(())
    }

    /// Writes an object unless one of that name exists (a conditional put): `false` when it
    /// does, and nothing was written.
    pub fn put_new(&self, relative: &str, bytes: Vec<u8>) -> Result<bool> {
        let key = self.key(relative);
        let options = object_store::PutOptions::from(object_store::PutMode::Create);
        match self
            .runtime
            .block_on(self.store.put_opts(&key, PutPayload::from(bytes), options))
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e).storage_context(|| format!("cannot write {}", self.show(&key))),
        }
    }

    /// The names of the objects right under `relative/`.
    pub fn list(&self, relative: &str) -> Result<Vec<String>> {
        let key = self.key(relative);
        let listed = self
            .runtime
            .block_on(self.store.list_with_delimiter(Some(&key)))
            .storage_context(|| format!("cannot list {}", self.show(&key)))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .collect())
    }

    pub fn delete(&self, relative: &str) -> Result<()> {
        let key = self.key(relative);
        match self.runtime.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).storage_context(|| format!("cannot delete {}", self.show(&key))),
        }
    }

    /// `s3://bucket/prefix/relative`, for messages.
    pub fn shown(&self, relative: &str) -> String {
        self.show(&self.key(relative))
    }

    pub fn get(&self, relative: &str) -> Result<Bytes> {
        let key = self.key(relative);
        self.runtime
            .block_on(async { self.store.get(&key).await?.bytes().await })
            .storage_context(|| format!("cannot read {}", self.show(&key)))
    }

    pub fn exists(&self, relative: &str) -> Result<bool> {
        let key = self.key(relative);
        match self.runtime.block_on(self.store.head(&key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e).storage_context(|| format!("cannot look up {}", self.show(&key))),
        }
    }

    /// `s3://bucket/key`.
    fn show(&self, key: &Key) -> String {
        format!("s3://{}/{key}", self.url.host_str().unwrap_or_default())
    }
}
