//! A [`Job`]: what a run needs, built once from the job's definition, and the commands that
//! use only its first page (`check`, `schema infer`, a shard's plan) or none of its output
//! (the benchmark floors).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use tokio::sync::mpsc;

use super::pipeline::{FetchedPage, PAGE_CHANNEL, join};
use crate::Error;
use crate::config::JobDefinition;
use crate::decode::{PageDecoder, infer_schema};
use crate::env::Env;
use crate::fetch::{Fetcher, FetcherParts, Page};
use crate::paginate::{PageRequest, Paginator};
use crate::sink::OutputConfig;
use crate::storage::Location;
use crate::vocab::{ConfigError, ConfigErrors, check_base_url, join_url};

/// A job ready to run: secrets resolved, client built.
pub struct Job {
    pub name: String,
    pub(super) fetcher: Arc<Fetcher>,
    pub(super) paginator: Paginator,
    pub(super) output: OutputConfig,
    pub(super) page_size: usize,
    pub(super) concurrency: crate::concurrency::Concurrency,
    /// A directory, or an object-storage prefix.
    pub(super) state_dir: Location,
    pub(super) incremental: Option<crate::incremental::IncrementalConfig>,
    /// The current-state table, if the job keeps one.
    pub(super) table: Option<crate::table::Table>,
    /// The longest gap between two fire times of its `[schedule]`, in seconds, for the
    /// metrics that alerting rules compare the last success with.
    pub(super) schedule_interval: Option<f64>,
    pub(super) drift: crate::config::Drift,
    pub(super) on_invalid: crate::config::OnInvalid,
    pub(super) on_count_mismatch: crate::config::OnCountMismatch,
    /// The fields that identify a record (empty: no key), and what a key seen twice in a
    /// run does.
    pub(super) key: Vec<String>,
    pub(super) on_duplicate: crate::config::OnDuplicate,
    /// The declared columns, if the job has a column file.
    pub(super) declared: Option<SchemaRef>,
    pub(super) counters: Arc<Counters>,
    /// How the job is cut into slices, if it is.
    pub(super) slicing: Option<crate::slice::Slicing>,
}

/// What a run has fetched so far, for a progress display; updated as pages arrive.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) pages: std::sync::atomic::AtomicU64,
    pub(super) records: std::sync::atomic::AtomicU64,
    pub(super) bytes: std::sync::atomic::AtomicU64,
    /// The records the API states in all (0: it has not said).
    pub(super) stated: std::sync::atomic::AtomicU64,
    /// The records committed before this process began (a resumed run).
    pub(super) committed_before: std::sync::atomic::AtomicU64,
    /// A sliced run's slices in all (0: not sliced), and those done (fetched).
    pub(super) slices: std::sync::atomic::AtomicU64,
    pub(super) slices_done: std::sync::atomic::AtomicU64,
    /// The most pages held ahead of a waiting one, and the bytes of them held on disk.
    pub(super) held_peak: std::sync::atomic::AtomicU64,
    pub(super) spilled: std::sync::atomic::AtomicU64,
}

/// A live view of a running job's progress.
#[derive(Clone)]
pub struct ProgressHandle {
    counters: Arc<Counters>,
    fetcher: Arc<Fetcher>,
    concurrency: crate::concurrency::Concurrency,
}

/// One reading of a [`ProgressHandle`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub pages: u64,
    pub records: u64,
    /// Bytes of response bodies (decompressed).
    pub bytes: u64,
    pub retries: u64,
    pub logins: u64,
    /// The records the API states the run will have, if it said.
    pub stated: Option<u64>,
    /// Records of the run committed before this process began (a resumed run).
    pub committed_before: u64,
    /// A sliced run's slices done and in all.
    pub slices: Option<(u64, u64)>,
    /// Requests in flight allowed now (the adaptive limit where it is one).
    pub concurrency: usize,
}

impl ProgressHandle {
    pub fn read(&self) -> Progress {
        use std::sync::atomic::Ordering::Relaxed;
        Progress {
            pages: self.counters.pages.load(Relaxed),
            records: self.counters.records.load(Relaxed),
            bytes: self.counters.bytes.load(Relaxed),
            retries: self.fetcher.retries(),
            logins: self.fetcher.auth().logins(),
            stated: Some(self.counters.stated.load(Relaxed)).filter(|s| *s > 0),
            committed_before: self.counters.committed_before.load(Relaxed),
            slices: Some(self.counters.slices.load(Relaxed))
                .filter(|n| *n > 0)
                .map(|n| (self.counters.slices_done.load(Relaxed), n)),
            concurrency: self.concurrency.report().limit,
        }
    }
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
        let header_map = |pairs: &mut dyn Iterator<Item = (&String, &String)>| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) else {
                    continue; // rejected by validation already
                };
                headers.insert(name, value);
            }
            headers
        };
        // Endpoint headers are inserted last, so they win over the provider's; those with
        // placeholders are each slice's to fill in.
        let headers = header_map(
            &mut provider.headers.iter().chain(
                self.job
                    .endpoint
                    .headers
                    .iter()
                    .filter(|(_, v)| crate::slice::template::placeholders(v).is_empty()),
            ),
        );
        let proxying = provider
            .proxy
            .build(env)
            .map_err(|e| ConfigErrors::from(e).in_file(&self.provider_file))?;
        let tls = provider
            .tls
            .build(env)
            .map_err(|e| ConfigErrors::from(e).in_file(&self.provider_file))?;
        let handshakes = tls.handshakes.clone();
        let client = crate::http::client(
            &provider.user_agent,
            Duration::from_secs(provider.timeout_secs),
            Duration::from_secs(provider.connect_timeout_secs),
            &proxying,
            tls,
        )
        .map_err(|e| {
            ConfigErrors::from(ConfigError::file(
                &self.provider_file,
                format!("cannot build the HTTP client: {e}"),
            ))
        })?;
        let endpoint = &self.job.endpoint;
        let paginator = self.job.pagination.build();
        let via = match (&provider.proxy.url, proxying.describe(&base, env)) {
            (Some(url), _) if url != "none" => Some(url.clone()),
            (_, from_env) => from_env,
        };
        let http = crate::http::Http {
            client,
            retry: provider.retry.clone(),
            max_response_bytes: provider.max_response_bytes,
            via,
            handshakes,
            peer: Default::default(),
        };
        let auth = Arc::new(auth);
        let limiter = provider
            .rate_limit
            .as_ref()
            .and_then(|r| crate::ratelimit::shared(provider_name, r));
        let stated = provider
            .errors
            .as_ref()
            .map(crate::fetch::StatedErrorsConfig::build)
            .unwrap_or_default();
        let fetcher = Fetcher::new(FetcherParts {
            job: self.name.clone(),
            http: http.clone(),
            method: endpoint.method.as_reqwest(),
            url: join_url(&base, &endpoint.path),
            query: endpoint.query.clone(),
            headers: headers.clone(),
            body: endpoint.body.clone(),
            auth: auth.clone(),
            records_pointer: endpoint.records_pointer.clone(),
            pointers: paginator.pointers().clone(),
            allowed_hosts: provider.allowed_hosts.clone(),
            limiter: limiter.clone(),
            stated: stated.clone(),
        });
        let slicing = self.job.sliced().then(|| {
            let source = match &self.job.partitions {
                Some(crate::slice::PartitionsConfig::Endpoint {
                    path,
                    query,
                    items_pointer,
                    fields,
                    pagination,
                    ..
                }) => {
                    let paginator = pagination
                        .as_deref()
                        .cloned()
                        .unwrap_or(crate::paginate::PaginationConfig::None(Default::default()))
                        .build();
                    let lister = Fetcher::new(FetcherParts {
                        job: self.name.clone(),
                        http: http.clone(),
                        method: reqwest::Method::GET,
                        url: join_url(&base, path),
                        query: query.clone(),
                        // The provider's: the endpoint's are for the slices' requests.
                        headers: header_map(&mut provider.headers.iter()),
                        body: None,
                        auth: auth.clone(),
                        records_pointer: items_pointer.clone(),
                        pointers: paginator.pointers().clone(),
                        allowed_hosts: provider.allowed_hosts.clone(),
                        limiter: limiter.clone(),
                        stated: stated.clone(),
                    });
                    Some(crate::slice::PartitionSource::new(
                        lister,
                        paginator,
                        fields.clone(),
                    ))
                }
                _ => None,
            };
            let template = crate::slice::Template {
                base: base.clone(),
                path: endpoint.path.clone(),
                query: endpoint.query.clone(),
                headers: endpoint.headers.clone(),
                body: endpoint.body.clone(),
            };
            crate::slice::Slicing::new(
                self.job.partitions.clone(),
                source,
                self.job.windows.clone(),
                template,
                self.job.slices.concurrency,
                match self.job.output.layout {
                    crate::sink::Layout::Flat => "flat",
                    crate::sink::Layout::Hive => "hive",
                },
            )
        });
        let declared = match &self.job.schema.file {
            Some(file) => Some(Arc::new(
                crate::columns::ColumnsFile::load(std::path::Path::new(file)).map_err(
                    |mut e| {
                        for err in &mut e.0 {
                            // Say which job named the file.
                            err.message = format!(
                                "{} (the column file of {})",
                                err.message,
                                self.file.display()
                            );
                        }
                        e
                    },
                )?,
            )),
            None => None,
        };
        if let (Some(schema), Some(file)) = (&declared, &self.job.schema.file) {
            // The decoder checks what the types need (a known time zone, ...).
            PageDecoder::new(schema.clone(), 1, true).map_err(|e| {
                ConfigErrors::from(ConfigError::file(
                    file,
                    format!("the columns cannot be decoded: {e}"),
                ))
            })?;
        }
        Ok(Job {
            name: self.name.clone(),
            fetcher: Arc::new(fetcher),
            page_size: self.job.pagination.page_size().unwrap_or(1024) as usize,
            paginator,
            output: self.job.output.clone(),
            concurrency: self.job.concurrency.build(provider_name),
            state_dir: self.job.state_dir.clone(),
            incremental: self.job.incremental.clone(),
            table: self
                .job
                .table
                .clone()
                .map(|t| crate::table::Table::new(t, &self.job.output)),
            schedule_interval: self.job.schedule.as_ref().and_then(longest_gap),
            drift: self.job.schema.drift,
            on_invalid: self.job.schema.on_invalid,
            on_count_mismatch: self.job.on_count_mismatch,
            key: self.job.record_key(),
            on_duplicate: self.job.on_duplicate,
            declared,
            counters: Arc::default(),
            slicing,
        })
    }
}

/// A benchmark floor: the requests of a run, with less done to the answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Floor {
    /// Fetch every page and drop it.
    Fetch,
    /// Fetch every page, parse its whole body as JSON, and drop it.
    Parse,
}

/// What a floor run moved.
#[derive(Clone, Debug, Serialize)]
pub struct FloorSummary {
    pub job: String,
    pub pages: u64,
    pub records: u64,
    /// Bytes of response bodies (decompressed).
    pub bytes: u64,
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
    /// The server's TLS version and certificate; `None` over plain HTTP.
    pub tls: Option<crate::http::TlsPeer>,
}

/// The first page of a job, and the paginator that has seen it.
pub(super) struct FirstPage {
    pub(super) request: PageRequest,
    pub(super) page: Page,
    pub(super) paginator: Paginator,
}

impl FirstPage {
    /// The columns its records give, or `None` when it has none.
    pub(super) fn columns(&self, job: &str) -> Result<Option<arrow_schema::Schema>, Error> {
        if self.page.outcome.records == 0 {
            return Ok(None);
        }
        infer_schema(&self.page.body[self.page.records.clone()])
            .map(Some)
            .map_err(|message| Error::Decode {
                job: job.to_string(),
                position: self.request.position.to_string(),
                message,
            })
    }
}

impl Job {
    /// A live view of this job's progress while it runs.
    pub fn progress(&self) -> ProgressHandle {
        ProgressHandle {
            counters: self.counters.clone(),
            fetcher: self.fetcher.clone(),
            concurrency: self.concurrency.clone(),
        }
    }

    /// Fetches the first page, and lets a copy of the paginator read it (for the total).
    /// `lenient`: a page the paginator cannot make sense of is still shown (`check`).
    pub(super) async fn first_page(&self, lenient: bool) -> Result<FirstPage, Error> {
        let request = self.paginator.first();
        let page = match &self.slicing {
            // A sliced job's first page is its first slice's.
            Some(slicing) => {
                let failed = |message: String| self.slices_error(message);
                let plan = slicing
                    .plan(chrono::Utc::now(), &Default::default(), None)
                    .await
                    .map_err(failed)?;
                if plan.is_empty() {
                    return Err(failed(
                        "the job has no slices now: no partition or no window".into(),
                    ));
                }
                let target = slicing.target(&plan, 0).map_err(failed)?;
                self.fetcher.fetch_at(&target, &request, None).await?
            }
            None => self.fetcher.fetch(&request).await?,
        };
        let mut paginator = self.paginator.clone();
        let next = paginator.next(&request, &page.outcome);
        if let (Err(e), false) = (next, lenient) {
            return Err(Error::Paginate {
                job: self.name.clone(),
                position: request.position.to_string(),
                message: e.0,
            });
        }
        Ok(FirstPage {
            request,
            page,
            paginator,
        })
    }

    /// The columns of the first page, as `apisnap schema infer` proposes them.
    pub async fn infer_columns(&self) -> Result<arrow_schema::Schema, Error> {
        let first = self.first_page(true).await?;
        infer_schema(&first.page.body[first.page.records.clone()]).map_err(|message| {
            Error::Decode {
                job: self.name.clone(),
                position: first.request.position.to_string(),
                message,
            }
        })
    }

    /// Authenticates and fetches the first page only; writes nothing.
    pub async fn check(&self) -> Result<CheckReport, Error> {
        let first = self.first_page(true).await?;
        let fields = first
            .columns(&self.name)?
            .map(|schema| {
                schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), f.data_type().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(CheckReport {
            job: self.name.clone(),
            request: self.fetcher.describe(&first.request),
            status: first.page.status.as_u16(),
            bytes: first.page.body.len(),
            records: first.page.outcome.records,
            total: first.paginator.total(),
            fields,
            logins: self.fetcher.auth().logins(),
            tls: self.fetcher.tls_peer(),
        })
    }

    /// Requests in flight: the fixed limit, or where the provider's adaptive one is.
    pub fn concurrency_report(&self) -> crate::concurrency::ConcurrencyReport {
        self.concurrency.report()
    }

    /// Sends the requests of a full run (same pagination, concurrency, retries) and discards
    /// the answers, parsed or not: the floors a run's speed is compared with. Writes
    /// nothing and neither reads nor changes the job's state.
    pub async fn floor(&self, floor: Floor) -> Result<FloorSummary, Error> {
        let started = Instant::now();
        let (tx, mut rx) = mpsc::channel::<FetchedPage>(PAGE_CHANNEL);
        let job = self.name.clone();
        let sink = tokio::task::spawn_blocking(move || {
            while let Some(page) = rx.blocking_recv() {
                if floor == Floor::Parse {
                    serde_json::from_slice::<serde::de::IgnoredAny>(&page.body).map_err(|e| {
                        Error::Decode {
                            job: job.clone(),
                            position: page.position.to_string(),
                            message: e.to_string(),
                        }
                    })?;
                }
            }
            Ok(())
        });
        let fetched = self
            .fetch_stage(
                super::pipeline::List::whole(self.paginator.first().position, None, None),
                tx,
                None,
            )
            .await;
        let parsed = join(&self.name, sink).await;
        let pages = fetched?;
        parsed?;
        let p = self.progress().read();
        Ok(FloorSummary {
            job: self.name.clone(),
            pages,
            records: p.records,
            bytes: p.bytes,
            duration_secs: started.elapsed().as_secs_f64(),
        })
    }
}

/// The longest gap between consecutive fire times of `schedule` over its next 200.
fn longest_gap(schedule: &crate::schedule::ScheduleConfig) -> Option<f64> {
    let times = schedule.upcoming(chrono::Utc::now(), 200).ok()?;
    times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_seconds() as f64)
        .reduce(f64::max)
}
