//! The decode stages: pages decoded ahead on the blocking pool with the columns last settled
//! on, then in page order by the decode stage, which decides about the pages that need it
//! (the first, one with a new field, one with a value its column cannot take).

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use tokio::sync::mpsc;

use super::{FetchedPage, ToWriter};
use crate::Error;
use crate::decode::{PageDecoder, infer_schema};

/// The partitions of a sliced run: each page's values, added to its records as columns.
pub(super) struct Partitions {
    pub(super) plan: Option<Arc<crate::slice::SlicePlan>>,
    /// The columns, after the records' own; empty when none are written.
    pub(super) columns: Vec<arrow_schema::FieldRef>,
}

impl Partitions {
    /// The snapshot's columns: the records', then the partitions'.
    fn schema(&self, records: &SchemaRef) -> Result<SchemaRef, String> {
        if self.columns.is_empty() {
            return Ok(records.clone());
        }
        if let Some(clash) = self
            .columns
            .iter()
            .find(|c| records.field_with_name(c.name()).is_ok())
        {
            return Err(format!(
                "the records have a field `{}`, which is also a partition's value (written as \
                 a column): name the partition's value otherwise",
                clash.name()
            ));
        }
        let fields: Vec<arrow_schema::FieldRef> = records
            .fields()
            .iter()
            .chain(&self.columns)
            .cloned()
            .collect();
        Ok(Arc::new(arrow_schema::Schema::new(fields)))
    }

    /// `batch` with the columns of slice `slice`'s partition.
    fn add(
        &self,
        batch: RecordBatch,
        schema: &SchemaRef,
        slice: Option<u64>,
    ) -> Result<RecordBatch, String> {
        if self.columns.is_empty() {
            return Ok(batch);
        }
        let plan = self.plan.as_ref().expect("a sliced run has a plan");
        let partition = slice.and_then(|i| plan.get(i).partition);
        let mut columns = batch.columns().to_vec();
        columns.extend(crate::slice::constant_columns(
            &self.columns,
            partition,
            batch.num_rows(),
        ));
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
    }
}

/// Infers the schema from the first page (unless a resumed run brings it), then decodes
/// every page into batches, each page followed by its end marker. A field that the schema
/// lacks is handled by the drift policy.
#[allow(clippy::too_many_arguments)]
pub(super) fn decode_stage(
    job: &str,
    page_size: usize,
    (drift, on_invalid): (crate::config::Drift, crate::config::OnInvalid),
    schema: Option<SchemaRef>,
    partitions: Partitions,
    settled: Settled,
    mut pages: mpsc::Receiver<FetchedPage>,
    batches: mpsc::Sender<ToWriter>,
) -> Result<(), Error> {
    use crate::config::Drift;
    let strict = drift != Drift::Ignore;
    let make = |schema: SchemaRef| {
        PageDecoder::new(schema, page_size, strict).map_err(|e| Error::Internal {
            job: job.to_string(),
            message: format!("cannot build the decoder: {e}"),
        })
    };
    // The snapshot's columns (the records' and the partitions'), as the writer has them.
    let written: std::cell::RefCell<Option<SchemaRef>> = Default::default();
    // New columns go to the writer, then to the pages decoded ahead; `None` when the writer
    // has stopped (its error is the one to report).
    let open = |schema: &SchemaRef| -> Result<Option<PageDecoder>, Error> {
        let full = partitions.schema(schema).map_err(|message| Error::Decode {
            job: job.to_string(),
            position: "the first page".into(),
            message,
        })?;
        *written.borrow_mut() = Some(full.clone());
        if batches.blocking_send(ToWriter::Open(full)).is_err() {
            return Ok(None);
        }
        settled.set(schema);
        make(schema.clone()).map(Some)
    };
    let mut current: Option<(SchemaRef, PageDecoder)> = None;
    // Fields dropped so far, each warned about once.
    let mut warned = std::collections::HashSet::new();
    if let Some(schema) = schema {
        let Some(decoder) = open(&schema)? else {
            return Ok(());
        };
        current = Some((schema, decoder));
    }
    while let Some(page) = pages.blocking_recv() {
        let fail = |message: String| Error::Decode {
            job: job.to_string(),
            position: page.position.to_string(),
            message,
        };
        let slice = &page.body[page.records.clone()];
        // The first page with records sets the columns (an empty first page has none).
        let undecided = current.as_ref().is_none_or(|(s, _)| s.fields().is_empty());
        if undecided && (current.is_none() || !slice.starts_with(b"[]")) {
            let schema = Arc::new(infer_schema(slice).map_err(fail)?);
            tracing::debug!(job, fields = schema.fields().len(), "schema inferred");
            let Some(decoder) = open(&schema)? else {
                return Ok(());
            };
            current = Some((schema, decoder));
        }
        let (schema, decoder) = current.as_mut().expect("set above");
        let mut nulled = Vec::new();
        let ahead = page
            .decoded
            .filter(|(with, _)| Arc::ptr_eq(with, schema))
            .map(|(_, batches)| batches);
        let mut attempt = ahead.map_or_else(|| decoder.decode_all(slice), Ok);
        // New fields first (at any depth): the policy says whether they fail the run or
        // grow the columns; then a page that still does not decode has a value its column
        // cannot take, for `on_invalid`.
        if attempt.is_err() && strict {
            // A page whose own inference fails (a field an object in one record and `[]` in
            // another) has no new fields to add: its values are for `on_invalid`.
            let (evolved, added) = crate::decode::evolve(schema, slice)
                .unwrap_or_else(|_| (schema.as_ref().clone(), Vec::new()));
            if !added.is_empty() {
                let names: Vec<String> = added.iter().map(|f| format!("`{f}`")).collect();
                if drift == Drift::Fail {
                    return Err(fail(format!(
                        "the records have field(s) {} that the snapshot's columns do not \
                         (they are fixed by the column file, or else by the first page). Set \
                         `schema.drift = \"evolve\"` to add new fields (as columns, or inside \
                         their objects), or `\"ignore\"` to drop them",
                        names.join(", ")
                    )));
                }
                tracing::warn!(job, position = %page.position, fields = %names.join(", "), "new fields: adding columns (schema.drift = evolve)");
                let evolved = Arc::new(evolved);
                let Some(evolved_decoder) = open(&evolved)? else {
                    return Ok(());
                };
                *decoder = evolved_decoder;
                *schema = evolved;
                attempt = decoder.decode_all(slice);
            }
        }
        let decoded = match attempt {
            Ok(b) => b,
            // Not a new field: a value the column's type cannot take.
            Err(e) => {
                if on_invalid == crate::config::OnInvalid::Null {
                    let (repaired, counts) =
                        crate::decode::null_invalid(schema, slice, strict).map_err(fail)?;
                    tracing::warn!(job, position = %page.position, values = ?counts, "values that cannot be read written as null (schema.on_invalid = null)");
                    nulled = counts;
                    // A failed decode leaves the decoder mid-batch: start a clean one.
                    *decoder = make(schema.clone())?;
                    decoder
                        .decode_all(&repaired)
                        .map_err(|e| fail(e.to_string()))?
                } else {
                    let why = crate::decode::find_invalid(schema, slice, strict)
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| e.to_string());
                    return Err(fail(format!(
                        "{why}. Fix the column file or set `schema.on_invalid = \"null\"` \
                         to write null instead (counted in the manifest)"
                    )));
                }
            }
        };
        let dropped = if drift == Drift::Ignore {
            let counts = crate::decode::dropped_fields(schema, slice).map_err(fail)?;
            for (field, _) in &counts {
                if warned.insert(field.clone()) {
                    tracing::warn!(job, position = %page.position, field = %field, "a field the columns lack is dropped (schema.drift = ignore; counted in the manifest)");
                }
            }
            counts
        } else {
            Vec::new()
        };
        let full = written.borrow().clone().expect("opened above");
        for batch in decoded {
            let batch = partitions.add(batch, &full, page.slice).map_err(fail)?;
            if batches
                .blocking_send(ToWriter::Batch {
                    batch,
                    slice: page.slice,
                })
                .is_err()
            {
                return Ok(());
            }
        }
        if batches
            .blocking_send(ToWriter::PageEnd {
                next: page.next,
                nulled,
                dropped,
                stated: page.stated,
                slice: page.slice,
                records: page.count,
                end_of_run: page.end_of_run,
            })
            .is_err()
        {
            break;
        }
    }
    Ok(())
}

/// The columns the decode stage has settled on, for pages decoded ahead.
#[derive(Clone, Default)]
pub(super) struct Settled(Arc<std::sync::RwLock<Option<SchemaRef>>>);

impl Settled {
    pub(super) fn set(&self, schema: &SchemaRef) {
        *self.0.write().expect("not poisoned") = Some(schema.clone());
    }

    fn get(&self) -> Option<SchemaRef> {
        self.0.read().expect("not poisoned").clone()
    }
}

/// Decodes pages ahead of the decode stage, several at a time on the blocking pool, and
/// hands them on in page order. A page that does not decode with the settled columns (or
/// arrives before there are any) goes on undecoded: the decode stage decides about it.
pub(super) async fn decode_ahead(
    page_size: usize,
    strict: bool,
    settled: Settled,
    mut pages: mpsc::Receiver<FetchedPage>,
    out: mpsc::Sender<FetchedPage>,
) {
    use futures_util::StreamExt;
    use futures_util::stream::FuturesOrdered;
    let depth = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let mut pending = FuturesOrdered::new();
    let mut open = true;
    while open || !pending.is_empty() {
        tokio::select! {
            // Hand on finished pages first: the decode stage is waiting for them in order.
            biased;
            Some(page) = pending.next(), if !pending.is_empty() => {
                if out.send(page).await.is_err() {
                    return;
                }
            }
            page = pages.recv(), if open && pending.len() < depth => match page {
                Some(page) => pending.push_back(decode_one(page, page_size, strict, settled.get())),
                None => open = false,
            },
        }
    }
}

async fn decode_one(
    mut page: FetchedPage,
    page_size: usize,
    strict: bool,
    schema: Option<SchemaRef>,
) -> FetchedPage {
    let Some(schema) = schema else {
        return page;
    };

    let (body, range) = (page.body.clone(), page.records.clone());
    let with = schema.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        PageDecoder::new(schema, page_size, strict)
            .ok()?
            .decode_all(&body[range])
            .ok()
    })
    .await
    .ok()
    .flatten();
    page.decoded = decoded.map(|batches| (with, batches));
    page
}
