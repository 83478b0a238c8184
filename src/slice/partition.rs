//! Partitions listed by another request of the provider (`/me` → its accounts, `/stores`
//! → every store), paginated itself: read once when a run starts, and frozen with it.

use std::collections::BTreeMap;

use crate::fetch::Fetcher;
use crate::paginate::{Next, Paginator};
use crate::vocab::JsonPointer;

/// The most partitions one run takes: past this the list is more likely a mistake (the
/// records of an event stream taken for a list of accounts) than a plan.
const MAX_PARTITIONS: usize = 1_000_000;

/// The request that lists the partitions, and where each item's values are.
pub struct PartitionSource {
    fetcher: Fetcher,
    paginator: Paginator,
    fields: BTreeMap<String, JsonPointer>,
}

impl PartitionSource {
    /// `fetcher` requests the list (its records are the items), `paginator` walks it.
    pub fn new(
        fetcher: Fetcher,
        paginator: Paginator,
        fields: BTreeMap<String, JsonPointer>,
    ) -> PartitionSource {
        PartitionSource {
            fetcher,
            paginator,
            fields,
        }
    }

    /// Requests made so far (for the run's report).
    pub fn requests(&self) -> u64 {
        self.fetcher.requests()
    }

    /// Every item's values, in the order the API lists them. An item without one of the
    /// fields, or with a value that is not a text or a whole number, is an error naming it.
    pub async fn list(&self) -> Result<Vec<BTreeMap<String, serde_json::Value>>, String> {
        let mut partitions = Vec::new();
        let mut request = self.paginator.first();
        let mut paginator = self.paginator.clone();
        loop {
            let page = self
                .fetcher
                .fetch(&request)
                .await
                .map_err(|e| format!("listing the partitions: {e}"))?;
            let items: Vec<serde_json::Value> =
                serde_json::from_slice(&page.body[page.records.clone()])
                    .map_err(|e| format!("listing the partitions: the items are not JSON: {e}"))?;
            for item in &items {
                let number = partitions.len() + 1;
                let mut values = BTreeMap::new();
                for (name, pointer) in &self.fields {
                    let value = pointer.get(item).filter(|v| !v.is_null()).ok_or_else(|| {
                        format!(
                            "listing the partitions: item {number} of {} has no value at \
                             {pointer} (`partitions.fields.{name}`)",
                            self.fetcher.describe(&request)
                        )
                    })?;
                    if !(value.is_string() || value.is_i64() || value.is_u64()) {
                        return Err(format!(
                            "listing the partitions: item {number} has {value} at {pointer}: \
                             expected a text or a whole number"
                        ));
                    }
                    values.insert(name.clone(), value.clone());
                }
                partitions.push(values);
            }
            if partitions.len() > MAX_PARTITIONS {
                return Err(format!(
                    "listing the partitions: more than {MAX_PARTITIONS}; is `partitions.path` \
                     the list it should be?"
                ));
            }
            match paginator
                .next(&request, &page.outcome)
                .map_err(|e| format!("listing the partitions: {}", e.0))?
            {
                Next::Continue(next) => request = self.fetcher.scrubbed(next),
                Next::Done => break,
            }
        }
        Ok(partitions)
    }
}
