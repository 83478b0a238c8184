//! One run of one job: the streaming pipeline.
//!
//! ```text
//!  fetch (async, tokio)  --pages-->  decode (thread)  --batches-->  write (thread)
//! ```
//!
//! Both channels are bounded, so a slow writer slows the fetcher instead of filling memory:
//! memory depends on the page size and the channel depths, never on the number of records.
//! The output file is committed (fsync + rename) only when every stage finished cleanly;
//! on any error it is dropped and its temporary file removed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::Error;
use crate::config::{ConfigError, ConfigErrors, JobDefinition, check_base_url, join_url};
use crate::decode::{PageDecoder, infer_schema};
use crate::env::Env;
use crate::fetch::{Fetcher, FetcherParts};
use crate::paginate::{Next, PageRequest, Paginator, Position};
use crate::sink::{BatchWriter, OutputConfig, WrittenFile};

/// Pages buffered between the fetcher and the decoder.
const PAGE_CHANNEL: usize = 2;
/// Batches buffered between the decoder and the writer.
const BATCH_CHANNEL: usize = 2;

/// A job ready to run: secrets resolved, client built.
pub struct Job {
    pub name: String,
    fetcher: Arc<Fetcher>,
    paginator: Paginator,
    output: OutputConfig,
    page_size: usize,
    concurrency: usize,
}

impl JobDefinition {
    /// Resolves secrets and builds the runtime objects. Fails, naming file and field, when a
    /// secret is missing; makes no request.
    pub fn build(&self, env: &Env) -> Result<Job, ConfigErrors> {
        let provider = &self.provider;
        let base = check_base_url(&provider.base_url, "base_url")
            .map_err(|e| ConfigErrors::from(e).in_file(&self.provider_file))?;
        let provider_name = self.job.provider.as_str();
        let auth = provider
            .auth
            .build(provider_name, &base, env)
            .map_err(|e| e.in_file(&self.provider_file))?;
        let mut headers = HeaderMap::new();
        // Endpoint headers are inserted last, so they win over the provider's.
        for (name, value) in provider.headers.iter().chain(&self.job.endpoint.headers) {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                continue; // rejected by validation already
            };
            headers.insert(name, value);
        }
        let client = crate::fetch::client(
            &provider.user_agent,
            Duration::from_secs(provider.timeout_secs),
            Duration::from_secs(provider.connect_timeout_secs),
        )
        .map_err(|e| {
            ConfigErrors::from(ConfigError::file(
                &self.provider_file,
                format!("cannot build the HTTP client: {e}"),
            ))
        })?;
        let endpoint = &self.job.endpoint;
        let fetcher = Fetcher::new(FetcherParts {
            job: self.name.clone(),
            client,
            method: endpoint.method.as_reqwest(),
            url: join_url(&base, &endpoint.path),
            query: endpoint.query.clone(),
            headers,
            body: endpoint.body.clone(),
            auth: Arc::new(auth),
            retry: provider.retry.clone(),
            records_pointer: endpoint.records_pointer.clone(),
            pointers: self.job.pagination.pointers(),
            allowed_hosts: provider.allowed_hosts.clone(),
            limiter: provider
                .rate_limit
                .as_ref()
                .and_then(|r| crate::ratelimit::shared(provider_name, r)),
        });
        Ok(Job {
            name: self.name.clone(),
            fetcher: Arc::new(fetcher),
            paginator: self.job.pagination.build(),
            output: self.job.output.clone(),
            page_size: self.job.pagination.page_size().unwrap_or(1024) as usize,
            concurrency: self.job.concurrency,
        })
    }
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub job: String,
    pub run_id: String,
    pub snapshot_dir: std::path::PathBuf,
    pub files: Vec<WrittenFile>,
    pub records: u64,
    pub pages: u64,
    pub requests: u64,
    pub retries: u64,
    pub logins: u64,
    pub duration_secs: f64,
}

/// What `apisnap check` saw on the first page.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub job: String,
    pub request: String,
    pub status: u16,
    pub bytes: usize,
    pub records: u64,
    pub total: Option<u64>,
    /// Field names and inferred Arrow types, in source order.
    pub fields: Vec<(String, String)>,
    pub logins: u64,
}

/// A new run id: UUIDv7, so ids sort by start time.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A fetched page on its way to the decoder.
struct FetchedPage {
    position: Position,
    body: Bytes,
    records: std::ops::Range<usize>,
}

enum ToWriter {
    Open(SchemaRef),
    Batch(RecordBatch),
}

impl Job {
    /// Runs the job to completion and returns what it wrote.
    pub async fn run(&self) -> Result<RunSummary, Error> {
        let started = Instant::now();
        let run_id = new_run_id();
        let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let snapshot_dir = self.output.render_dir(&self.name, &date, &run_id);
        let path = snapshot_dir.join(format!("part-00000.{}", self.output.format.extension()));
        tracing::info!(job = %self.name, run_id = %run_id, output = %path.display(), "run started");

        let (page_tx, page_rx) = mpsc::channel::<FetchedPage>(PAGE_CHANNEL);
        let (batch_tx, batch_rx) = mpsc::channel::<ToWriter>(BATCH_CHANNEL);

        let decoder = {
            let job = self.name.clone();
            let page_size = self.page_size;
            tokio::task::spawn_blocking(move || decode_stage(&job, page_size, page_rx, batch_tx))
        };
        let writer = {
            let job = self.name.clone();
            let output = self.output.clone();
            let path = path.clone();
            tokio::task::spawn_blocking(move || write_stage(&job, &output, &path, batch_rx))
        };
        let fetched = self.fetch_stage(page_tx).await;
        let decoded = join(&self.name, decoder).await;
        let written = join(&self.name, writer).await;

        // The first failure in pipeline order is the cause; later ones are its echoes.
        let outcome = (|| Ok((fetched?, decoded?, written?)))();
        let (pages, records, open) = match outcome {
            Ok(done) => done,
            Err(e) => {
                // The temporary file is gone with its writer; a directory this run created
                // and left empty goes too (it fails harmlessly when not empty).
                let _ = std::fs::remove_dir(&snapshot_dir);
                return Err(e);
            }
        };
        let open = open.ok_or_else(|| Error::Internal {
            job: self.name.clone(),
            message: "the run ended without a page".into(),
        })?;
        let file = tokio::task::spawn_blocking(move || open.finish())
            .await
            .map_err(|e| Error::Internal {
                job: self.name.clone(),
                message: format!("the writer stopped: {e}"),
            })?
            .map_err(|source| Error::Sink {
                job: self.name.clone(),
                source,
            })?;
        debug_assert_eq!(file.records, records);
        let summary = RunSummary {
            job: self.name.clone(),
            run_id,
            snapshot_dir,
            records: file.records,
            files: vec![file],
            pages,
            requests: self.fetcher.requests(),
            retries: self.fetcher.retries(),
            logins: self.fetcher.auth().logins(),
            duration_secs: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            job = %summary.job,
            records = summary.records,
            pages = summary.pages,
            retries = summary.retries,
            seconds = format!("{:.2}", summary.duration_secs),
            "run finished"
        );
        Ok(summary)
    }

    /// Authenticates and fetches the first page only; writes nothing.
    pub async fn check(&self) -> Result<CheckReport, Error> {
        let request = self.paginator.first(None);
        let page = self.fetcher.fetch(&request).await?;
        let slice = &page.body[page.records.clone()];
        let fields = if page.outcome.records == 0 {
            Vec::new()
        } else {
            infer_schema(slice)
                .map_err(|message| Error::Decode {
                    job: self.name.clone(),
                    position: request.position.to_string(),
                    message,
                })?
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().to_string()))
                .collect()
        };
        let mut paginator = self.paginator.clone();
        let _ = paginator.next(&request, &page.outcome);
        let total = paginator.total();
        Ok(CheckReport {
            job: self.name.clone(),
            request: self.fetcher.describe(&request),
            status: page.status.as_u16(),
            bytes: page.body.len(),
            records: page.outcome.records,
            total,
            fields,
            logins: self.fetcher.auth().logins(),
        })
    }

    /// Requests pages until the paginator says stop, keeping up to `concurrency` requests in
    /// flight where the next request is known in advance, and hands them on in page order.
    /// Returns the number of pages.
    async fn fetch_stage(&self, pages: mpsc::Sender<FetchedPage>) -> Result<u64, Error> {
        let mut paginator = self.paginator.clone();
        let mut in_flight: VecDeque<(PageRequest, AbortOnDrop)> = VecDeque::new();
        let mut expected = Some(paginator.first(None));
        let mut previous: Option<(Position, Bytes, std::ops::Range<usize>)> = None;
        let mut count = 0;
        let spawn = |request: &PageRequest| {
            let fetcher = self.fetcher.clone();
            let request = request.clone();
            AbortOnDrop(tokio::spawn(async move { fetcher.fetch(&request).await }))
        };
        loop {
            if in_flight.is_empty() {
                match expected.take() {
                    Some(r) => {
                        let handle = spawn(&r);
                        in_flight.push_back((r, handle));
                    }
                    None => break,
                }
            }
            while in_flight.len() < self.concurrency {
                let last = &in_flight.back().expect("not empty").0;
                match paginator.speculate(last) {
                    Some(r) => {
                        let handle = spawn(&r);
                        in_flight.push_back((r, handle));
                    }
                    None => break,
                }
            }
            let (current, mut handle) = in_flight.pop_front().expect("not empty");
            let page = (&mut handle.0).await.map_err(|e| Error::Internal {
                job: self.name.clone(),
                message: format!("a request task stopped: {e}"),
            })??;
            let paginate_error = |message: String| Error::Paginate {
                job: self.name.clone(),
                position: current.position.to_string(),
                message,
            };
            let next = paginator
                .next(&current, &page.outcome)
                .map_err(|e| paginate_error(e.0))?;
            let records = &page.body[page.records.clone()];
            if let Some((at, body, range)) = &previous
                && page.outcome.records > 0
                && body[range.clone()] == *records
            {
                return Err(paginate_error(format!(
                    "the server returned the same records as at {at}: it seems to ignore the \
                     pagination parameters; stopping instead of looping"
                )));
            }
            tracing::debug!(job = %self.name, position = %current.position, records = page.outcome.records, "page");
            count += 1;
            previous = Some((
                current.position.clone(),
                page.body.clone(),
                page.records.clone(),
            ));
            let fetched = FetchedPage {
                position: current.position,
                body: page.body,
                records: page.records,
            };
            if pages.send(fetched).await.is_err() {
                // The decoder stopped; its error is the one to report.
                break;
            }
            match next {
                Next::Done => break,
                // The speculation in flight is the right next request: keep it.
                Next::Continue(n) if in_flight.front().is_some_and(|(r, _)| *r == n) => {}
                Next::Continue(n) => {
                    // A short page (or the end) proved the speculation wrong: drop it.
                    in_flight.clear();
                    expected = Some(n);
                }
            }
        }
        Ok(count)
    }
}

/// A spawned request that is cancelled when dropped: speculative requests past the end, or
/// past a short page, are abandoned without output.
struct AbortOnDrop(tokio::task::JoinHandle<Result<crate::fetch::Page, crate::fetch::FetchError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn join<T>(job: &str, handle: tokio::task::JoinHandle<Result<T, Error>>) -> Result<T, Error> {
    handle.await.map_err(|e| Error::Internal {
        job: job.to_string(),
        message: format!("a pipeline stage stopped unexpectedly: {e}"),
    })?
}

/// Infers the schema from the first page, then decodes every page into batches.
fn decode_stage(
    job: &str,
    page_size: usize,
    mut pages: mpsc::Receiver<FetchedPage>,
    batches: mpsc::Sender<ToWriter>,
) -> Result<u64, Error> {
    let mut decoder: Option<PageDecoder> = None;
    let mut records = 0u64;
    while let Some(page) = pages.blocking_recv() {
        let fail = |message: String| Error::Decode {
            job: job.to_string(),
            position: page.position.to_string(),
            message,
        };
        let slice = &page.body[page.records.clone()];
        if decoder.is_none() {
            let schema = Arc::new(infer_schema(slice).map_err(fail)?);
            tracing::debug!(
                job,
                fields = schema.fields().len(),
                "schema inferred from the first page"
            );
            decoder =
                Some(PageDecoder::new(schema.clone(), page_size).map_err(|e| fail(e.to_string()))?);
            if batches.blocking_send(ToWriter::Open(schema)).is_err() {
                return Ok(records);
            }
        }
        let decoder = decoder.as_mut().expect("set above");
        let mut stopped = false;
        decoder
            .decode(slice, |batch| {
                records += batch.num_rows() as u64;
                if batches.blocking_send(ToWriter::Batch(batch)).is_err() {
                    stopped = true;
                }
                Ok(())
            })
            .map_err(|e| fail(e.to_string()))?;
        if stopped {
            break;
        }
    }
    Ok(records)
}

/// Appends batches to the output file; returns it open, to be committed by the caller only
/// if every stage succeeded. `None` when no page arrived (the run failed before one did).
fn write_stage(
    job: &str,
    output: &OutputConfig,
    path: &std::path::Path,
    mut batches: mpsc::Receiver<ToWriter>,
) -> Result<Option<Box<dyn BatchWriter>>, Error> {
    let sink_error = |source| Error::Sink {
        job: job.to_string(),
        source,
    };
    let mut writer: Option<Box<dyn BatchWriter>> = None;
    while let Some(message) = batches.blocking_recv() {
        match message {
            ToWriter::Open(schema) => writer = Some(output.open(path, schema).map_err(sink_error)?),
            ToWriter::Batch(batch) => writer
                .as_mut()
                .expect("Open comes first")
                .write(&batch)
                .map_err(sink_error)?,
        }
    }
    Ok(writer)
}
